"""A compressed model on disk: its weights and the architecture they need, loadable
with ``torch.load(weights_only=True)`` in a fresh process.

The file is a plain dict of tensors, strings, numbers and lists::

    {"format": "descentlab-model", "version": 1,
     "workload": "mnist1d-cnn",          # whose make_model() builds the dense architecture
     "pruning_history": [...],            # Torch-Pruning's [layer, is_out_channels, indices]
     "example_shape": [1, 40], "example_dtype": "float32",  # one tensor input; for a dict of inputs
                                                            # (a Hugging Face model) "example_inputs":
                                                            # {"kind": "dict", "inputs": {key: {"shape", "dtype"}}}
     "sparse": {"head.weight": {"values", "bits", "shape"}, ...},  # mostly-zero weights
     "state_dict": {...}}

The architecture of a structurally pruned model is the dense one with the
recorded channels removed: :func:`load_model` builds the workload's model,
replays Torch-Pruning's pruning history on it (its ``load_pruning_history``,
the library's own way to rebuild a pruned architecture) and loads the weights.
No pickled module is stored, so nothing is unpickled.

Unstructured pruning leaves tensors of the dense shape; with ``sparse=True`` the
weights that are at least half zeros are stored as their nonzero values and a
one-bit-per-entry map of where they go, so that the file, at least, gets
smaller: that is what ``bytes`` measures. (torch's CSR tensors were tried: with
64-bit indices the file came out larger than the dense one at 80 % sparsity.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from .inputs import Inputs, spec, zeros

FORMAT = "descentlab-model"
VERSION = 1


def save_model(path: str | os.PathLike, model: nn.Module, *, workload: str | None, example: Inputs,
               pruning_history: list | None = None, sparse: bool = False) -> int:
    """Write the model file atomically; returns its size in bytes."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    stored: dict[str, dict[str, Any]] = {}
    if sparse:
        for k in list(state):
            v = state[k]
            if v.is_floating_point() and v.ndim >= 2 and int(torch.count_nonzero(v)) * 2 <= v.numel():
                stored[k] = _pack(state.pop(k))
    payload = {
        "format": FORMAT, "version": VERSION, "workload": workload,
        "pruning_history": [list(h) for h in pruning_history or []],
        "sparse": stored, "state_dict": state,
    }
    described = spec(example)
    if described["kind"] == "tensor":
        payload.update(example_shape=described["shape"], example_dtype=described["dtype"])
    else:
        payload["example_inputs"] = described
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def read(path: str | os.PathLike) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"no model file {str(path)!r}") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which
        raise UsageError(f"cannot read the model file {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{str(path)!r} is not a descentlab model file (format {FORMAT!r})")
    return payload


_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack(t: Tensor) -> dict[str, Any]:
    """A mostly-zero tensor as its nonzero values and a bitmap of where they are
    (1 bit per entry: smaller than CSR's 64-bit indices at any sparsity)."""
    flat = t.reshape(-1)
    nz = flat != 0
    padded = torch.cat([nz, nz.new_zeros((-len(nz)) % 8)]).reshape(-1, 8).to(torch.uint8)
    return {"values": flat[nz].clone(), "bits": (padded * _BITS).sum(1).to(torch.uint8), "shape": list(t.shape)}


def _unpack(packed: dict[str, Any]) -> Tensor:
    shape = packed["shape"]
    n = 1
    for d in shape:
        n *= d
    nz = ((packed["bits"].unsqueeze(1) & _BITS) != 0).reshape(-1)[:n]
    out = packed["values"].new_zeros(n)
    out[nz] = packed["values"]
    return out.reshape(shape)


def _dense_state(payload: dict[str, Any]) -> dict[str, Tensor]:
    state = dict(payload["state_dict"])
    for key, packed in (payload.get("sparse") or {}).items():
        state[key] = _unpack(packed)
    return state


def load_model(path: str | os.PathLike, make_model: Callable[[], nn.Module] | None = None) -> nn.Module:
    """The model saved by :func:`save_model`, rebuilt in this process (eval mode).

    ``make_model`` builds the dense architecture; by default the saved
    workload's (``descentlab.workloads.load(name).make_model``)."""
    payload = read(path)
    if make_model is None:
        if not payload.get("workload"):
            raise UsageError(f"{str(path)!r} names no workload: pass make_model=")
        from .. import workloads

        make_model = workloads.load(payload["workload"]).make_model
    model = make_model()
    history = payload.get("pruning_history") or []
    if history:
        import torch_pruning as tp

        example = zeros(payload["example_inputs"]) if "example_inputs" in payload else \
            torch.zeros(payload["example_shape"], dtype=getattr(torch, payload.get("example_dtype", "float32")))
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        graph.load_pruning_history([tuple(h) for h in history])
    model.load_state_dict(_dense_state(payload))
    return model.eval()
