"""What a batch is, and how a model and a loss consume it.

A batch is a tuple ``(inputs, targets)`` (or ``(inputs,)``), or a dict of
tensors in the Hugging Face style, whose targets sit under ``target_key``
(default: the first of :data:`TARGET_KEYS` present).

* With a ``loss_fn``: ``loss = loss_fn(logits, targets)``, where the model is
  called as ``model(x)`` (tuple) or ``model(**inputs)`` (dict, targets left out).
* Without one (``loss_fn=None``), the model returns its own loss: it is called
  as ``model(x, y)`` (tuple) or ``model(**batch)`` (dict, targets included, as
  a Hugging Face model computes its loss from ``labels``), and the loss is
  ``outputs.loss``, ``outputs["loss"]``, the last element of a tuple
  ``(logits, loss)`` (nanoGPT), or the output itself when it is a 0-dim tensor.

The logits that metrics see are ``outputs.logits``, ``outputs["logits"]``, a
tuple's first element, or the output itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

TARGET_KEYS = ("labels", "label", "targets", "target", "y")


def to_device(batch: Any, device: torch.device) -> Any:
    """The batch with every tensor in it moved to ``device`` (tuples, lists, dicts)."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch) if type(batch) in (tuple, list) else batch
    return batch


def target_key_of(batch: Mapping[str, Any], target_key: str | None) -> str | None:
    if target_key is not None:
        return target_key
    return next((k for k in TARGET_KEYS if k in batch), None)


def targets_of(batch: Any, target_key: str | None = None) -> Any:
    """The targets of a batch (None when it has none)."""
    if isinstance(batch, Mapping):
        key = target_key_of(batch, target_key)
        return batch.get(key) if key is not None else None
    if isinstance(batch, (tuple, list)):
        return batch[1] if len(batch) >= 2 else None
    return None


def _call(model: Callable[..., Any], batch: Any, with_targets: bool, target_key: str | None) -> Any:
    if isinstance(batch, Mapping):
        key = target_key_of(batch, target_key)
        inputs = batch if with_targets else {k: v for k, v in batch.items() if k != key}
        return model(**inputs)
    if isinstance(batch, (tuple, list)):
        if with_targets and len(batch) >= 2:
            return model(*batch)
        return model(batch[0])
    return model(batch)


def own_loss(outputs: Any) -> Tensor:
    """The loss a model returned with its outputs (see the module docstring)."""
    loss = getattr(outputs, "loss", None)
    if loss is None and isinstance(outputs, Mapping):
        loss = outputs.get("loss")
    if loss is None and isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[-1], Tensor):
        loss = outputs[-1] if outputs[-1].ndim == 0 else None
    if loss is None and isinstance(outputs, Tensor) and outputs.ndim == 0:
        loss = outputs
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise ValueError(
            f"loss_fn=None expects the model to return its own loss (outputs.loss, outputs['loss'], "
            f"a tuple (logits, loss) or a 0-dim tensor); it returned {type(outputs).__name__}"
        )
    return loss


def logits_of(outputs: Any) -> Any:
    """The part of a model's outputs that metrics and a loss_fn take."""
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    if logits is None and isinstance(outputs, (tuple, list)) and outputs:
        logits = outputs[0]
    return outputs if logits is None else logits


def forward(model: Callable[..., Any], batch: Any, loss_fn: Callable[[Any, Any], Tensor] | None,
            target_key: str | None = None) -> tuple[Tensor, Any]:
    """``(loss, outputs)`` of one batch."""
    if loss_fn is None:
        outputs = _call(model, batch, True, target_key)
        return own_loss(outputs), outputs
    targets = targets_of(batch, target_key)
    if targets is None:
        raise ValueError(
            "the batch has no targets for loss_fn: expected (inputs, targets) or a dict with one of "
            f"{', '.join(TARGET_KEYS)} (or set target_key); a model that computes its own loss needs loss_fn=None"
        )
    outputs = _call(model, batch, False, target_key)
    return loss_fn(logits_of(outputs), targets), outputs


def batch_len(batch: Any) -> int:
    """Examples in a batch: the length of its first tensor."""
    if isinstance(batch, Tensor):
        return len(batch)
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else ()
    for v in values:
        n = batch_len(v)
        if n:
            return n
    return 0


def rows_of(batch: Any, rank: int, world: int) -> tuple[Any, float]:
    """Rows ``rank::world`` of a global batch (every tensor of it) and their share.
    A process left without rows (a last batch smaller than ``world``) takes one
    row with share 0, so every process still takes part in the gradient averaging."""
    n = batch_len(batch)
    mine = len(range(rank, n, world))

    def take(v: Any) -> Any:
        if isinstance(v, Tensor) and v.ndim > 0 and len(v) == n:
            return v[rank::world] if mine else v[:1]
        if isinstance(v, Mapping):
            return {k: take(x) for k, x in v.items()}
        if type(v) in (tuple, list):
            return type(v)(take(x) for x in v)
        return v

    return take(batch), (mine / n if n else 0.0)
