"""How a model's logits line up with its workload's targets, for distillation:
per example or per token, and whether the labels are shifted.

Soft targets need logits: a distribution per example (classification, logits
``(N, C)`` for labels ``(N,)``) or per token (a language model, logits
``(N, L, V)`` for token labels ``(N, L)``). The logits are read from a model's
outputs as the Trainer reads them (:func:`~descentlab.train.batch.logits_of`):
``outputs.logits`` (Hugging Face), a dict's ``"logits"``, a tuple's first
element, or the output itself.

Per token, which position predicts which label is the model's convention, not
the data's: a causal LM takes its inputs as labels and shifts them itself
(position i predicts token i + 1; Hugging Face's ``ForCausalLMLoss``), a token
classifier does not. :func:`layout_of` finds it on one batch instead of asking:
it makes labels that tell the two apart (each position's own argmax, so the
unshifted cross entropy is low and the shifted one is not), computes the
workload's own loss on them (``loss_fn(logits, labels)``, or the loss the model
returns from ``model(**batch)`` when ``loss_fn`` is None), and keeps the
alignment whose cross entropy, with Hugging Face's ignore index -100, equals
it. A loss that is neither is refused: the distilled student's hard-label term
would not be the loss its scratch twin trains on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..imports import first_line
from ..train.batch import logits_of, own_loss, target_key_of, targets_of
from .distill import IGNORE_INDEX, token_cross_entropy
from .inputs import call, describe, inputs_of

#: relative tolerance of "the workload's loss equals this cross entropy"
RTOL = 1e-4


@dataclass(frozen=True)
class Layout:
    """``per``: ``"example"`` or ``"token"``; ``shift``: per token, whether position i
    predicts label i + 1; ``shape``: the logits' shape on the probe batch."""

    per: str
    shift: bool
    shape: tuple[int, ...]

    def describe(self) -> str:
        if self.per == "example":
            return "per example"
        return "per token, " + ("shifted by one (a causal LM)" if self.shift else "unshifted")


def describe_inputs(batch: Any, target_key: str | None = None) -> str:
    """``the training inputs of shape (8, 40)``, or ``the training batch {input_ids: (8, 16)}``."""
    inputs = inputs_of(batch, target_key)
    if isinstance(inputs, Mapping):
        return "the training batch " + describe(inputs).removeprefix("inputs ")
    return "the training " + describe(inputs)


def logits_on(model: nn.Module, batch: Any, label: str, target_key: str | None = None) -> Tensor:
    """``model``'s logits of ``batch``'s inputs (targets left out), in eval mode, without
    gradients (the model's mode is kept); a UsageError naming ``label`` when it fails."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = call(model, inputs_of(batch, target_key))
    except Exception as exc:  # noqa: BLE001 - a model that does not fit the data
        raise UsageError(f"{label} fails on {describe_inputs(batch, target_key)}: {first_line(exc)}") from None
    finally:
        model.train(was)
    logits = logits_of(out)
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise UsageError(f"{label} returns {type(out).__name__}, expected logits: a float tensor, outputs.logits, "
                         "a dict's 'logits' or a tuple whose first element is the logits")
    return logits


def _n(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"


def layout_of(wl, model: nn.Module, batch: Any, label: str) -> Layout:
    """How ``model``'s logits line up with ``wl``'s targets (module docstring), or a
    UsageError that says what was expected."""
    key = wl.target_key
    targets = targets_of(batch, key)
    if not isinstance(targets, Tensor):
        raise UsageError(f"{wl.name}: the training batches have no targets (a tuple (inputs, targets) or a dict with "
                         "'labels'): distillation needs labels for its hard-target term")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise UsageError(f"{wl.name}: the targets are {targets.dtype} values, expected integer class or token labels "
                         "(only a model that outputs logits can be distilled)")
    logits = logits_on(model, batch, label, key)
    shape, tshape = tuple(logits.shape), tuple(targets.shape)
    if logits.ndim == 2 and tshape == shape[:1]:
        return Layout("example", False, shape)
    if logits.ndim == 3 and tshape == shape[:2]:
        return Layout("token", _shifted(wl, model, batch, logits, targets, label), shape)
    raise UsageError(f"{label} outputs logits of shape {_n(shape)} for targets of shape {_n(tshape)}: distillation "
                     "needs logits (N, C) for class labels (N,), or per-token logits (N, L, V) for token labels (N, L)")


def _shifted(wl, model: nn.Module, batch: Any, logits: Tensor, targets: Tensor, label: str) -> bool:
    """Whether position i's logits predict label i + 1 under the workload's own loss."""
    probe = logits.argmax(-1).to(targets.dtype)  # each position's own favourite: unshifted CE low, shifted not
    if probe.shape[1] > 2:
        probe[0, probe.shape[1] // 2] = IGNORE_INDEX  # and one position without a target
    try:
        reference = float(_own_loss(wl, model, batch, logits, probe))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{wl.name}: the workload's loss fails on token labels with the ignore index {IGNORE_INDEX} "
                         f"(as Hugging Face marks positions without a target): {first_line(exc)}") from None
    candidates = {shift: float(token_cross_entropy(logits, probe, shift=shift)) for shift in (True, False)}
    close = [s for s, v in candidates.items() if math.isclose(v, reference, rel_tol=RTOL, abs_tol=1e-6)]
    if not close:
        raise UsageError(
            f"{wl.name}: its loss on a batch ({reference:.6g}) is not the token cross entropy of {label}'s logits "
            f"against the labels, shifted by one position as a causal LM's ({candidates[True]:.6g}) or unshifted "
            f"({candidates[False]:.6g}), with ignore index {IGNORE_INDEX}: the distilled student's hard-target term "
            "would not be the loss it is compared on")
    return min(close, key=lambda s: abs(candidates[s] - reference))


def _own_loss(wl, model: nn.Module, batch: Any, logits: Tensor, labels: Tensor) -> Tensor:
    if wl.loss_fn is not None:
        return wl.loss_fn(logits, labels)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(batch, Mapping):
                key = target_key_of(batch, wl.target_key)
                return own_loss(model(**{**batch, key: labels}))
            return own_loss(model(batch[0], labels))
    finally:
        model.train(was)


def check_same(teacher: Layout, student: Layout, teacher_name: str, student_name: str) -> None:
    """The teacher's and the student's logits must line up with the targets alike."""
    if teacher.shape[1:] != student.shape[1:]:
        raise UsageError(f"teacher {teacher_name} outputs {_n(teacher.shape)} but student {student_name} outputs "
                         f"{_n(student.shape)}: distillation needs the same logits shape")
    if (teacher.per, teacher.shift) != (student.per, student.shift):
        raise UsageError(f"teacher {teacher_name}'s logits are {teacher.describe()} but student {student_name}'s "
                         f"are {student.describe()}: distillation needs them aligned alike")

