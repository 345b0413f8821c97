"""A model's example inputs, to trace, measure and time it: one tensor, or a dict
of tensors (a Hugging Face batch, its labels left out).

Compression runs a model outside the Trainer — to trace it for the structured
pruner, to count its FLOPs, to time it — so it calls the model as the Trainer
does on a batch's inputs (:mod:`descentlab.train.batch`): ``model(x)`` for a
tuple batch ``(x, y)``, ``model(**inputs)`` for a dict batch without its
targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..train.batch import target_key_of

Inputs = Any
"""A tensor, or a dict of tensors (keyword arguments of the model)."""


def example_batch(wl, n: int = 8) -> Any:
    """The first ``n`` training examples as one batch, as the Trainer gets it (a tuple or a dict)."""
    from ..train.data import as_batches

    return next(iter(as_batches(wl.train, min(n, wl.num_examples("train")), seed=0).epoch(0)))


def inputs_of(batch: Any, target_key: str | None = None) -> Inputs:
    """A batch's inputs: ``x`` of a tuple ``(x, y)``, a dict batch without its targets."""
    if isinstance(batch, Mapping):
        key = target_key_of(batch, target_key)
        return {k: v for k, v in batch.items() if k != key}
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def example_inputs(wl, n: int) -> Inputs:
    """The inputs of the first ``n`` training examples."""
    return inputs_of(example_batch(wl, n), wl.target_key)


def first(inputs: Inputs, n: int) -> Inputs:
    """The first ``n`` examples of ``inputs`` (every tensor of a dict sliced alike)."""
    if isinstance(inputs, Mapping):
        return {k: v[:n] if isinstance(v, Tensor) and v.ndim > 0 else v for k, v in inputs.items()}
    return inputs[:n]


def call(model: nn.Module, inputs: Inputs) -> Any:
    """``model(**inputs)`` for a dict, ``model(inputs)`` otherwise."""
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def describe(inputs: Inputs) -> str:
    """``inputs of shape (8, 40)`` or ``inputs {input_ids: (8, 16)}``, for messages."""
    if isinstance(inputs, Mapping):
        return "inputs {" + ", ".join(f"{k}: {tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}"
                                      for k, v in inputs.items()) + "}"
    if isinstance(inputs, Tensor):
        return f"inputs of shape {tuple(inputs.shape)}"
    return f"inputs of type {type(inputs).__name__}"


def spec(inputs: Inputs) -> dict[str, Any]:
    """One example's shapes and dtypes, to rebuild zeros of them (:func:`zeros`)."""
    if isinstance(inputs, Mapping):
        return {"kind": "dict", "inputs": {k: {"shape": [1, *v.shape[1:]], "dtype": str(v.dtype).removeprefix("torch.")}
                                           for k, v in inputs.items() if isinstance(v, Tensor)}}
    return {"kind": "tensor", "shape": [1, *inputs.shape[1:]], "dtype": str(inputs.dtype).removeprefix("torch.")}


def zeros(described: dict[str, Any]) -> Inputs:
    """Inputs of zeros of the shapes and dtypes :func:`spec` recorded."""
    if described.get("kind") == "dict":
        return {k: torch.zeros(v["shape"], dtype=getattr(torch, v["dtype"])) for k, v in described["inputs"].items()}
    return torch.zeros(described["shape"], dtype=getattr(torch, described["dtype"]))
