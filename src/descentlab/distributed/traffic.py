"""Bytes communicated, measured: ``with traffic.count() as t: ...; t.bytes``.

``count()`` replaces the collective functions of ``torch.distributed`` (in the
``torch.distributed`` namespace and in ``distributed_c10d``, whose functions
call one another) with counting wrappers for the duration of the block, and
restores them on exit. It sees every strategy whose collectives go through
those Python functions: DiLoCo (one all-reduce per outer step), DDP
communication hooks, FSDP2 (``all_gather_single`` / ``reduce_scatter_single``,
see ``torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py``; it also calls
``all_reduce``), ``ZeroRedundancyOptimizer`` (``broadcast``).

It does *not* see collectives issued from C++: DDP's built-in gradient
all-reduce (the Reducer) and its construction-time ``_broadcast_coalesced``,
functional collectives under ``torch.compile`` (``_c10d_functional`` ops), or a
module that imported a function by name before the block started. To count a
DDP model, register the Python all-reduce hook, numerically the same as DDP's
built-in one::

    hooks.register(ddp_model, "allreduce")
    with traffic.count() as t:
        train_step()
    print(t.bytes, t.calls, t.by_function)

Convention: ``bytes`` is the *payload* of each collective on this process,
``numel × element_size`` of its input, the same number on every rank:

* all_reduce, broadcast, reduce: the tensor (n);
* all_gather, all_gather_into_tensor/_single: this process's input (n; the
  output is p·n);
* reduce_scatter_tensor/_single: the input (n; the output is n/p);
  reduce_scatter, all_to_all: the input list's total;
* all_to_all_single: the input; all_reduce_coalesced: the tensors' total;
* send, isend: the tensor (the receiving side counts nothing: recv is not wrapped).

The bytes on the wire depend on the algorithm. A ring over p processes sends,
per process, 2(p−1)/p · n for an all-reduce (a reduce-scatter then an
all-gather), (p−1)/p · n for a reduce-scatter of n, (p−1) · n for an
all-gather of n per process, (p−1)/p · n for an all-to-all and about n for a
pipelined broadcast or reduce. With p = 2 an all-reduce sends exactly its payload.

A collective is counted when its call returns (an asynchronous one when it is
issued); one that calls another (``all_gather_into_tensor`` calls
``all_gather_single``) is counted once, as the outer one. Nested ``count()``
blocks each count everything in them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch.distributed as dist
from torch import Tensor

#: The functions counted, each with the argument whose tensor(s) are its payload.
PAYLOAD = {
    "all_reduce": "tensor",
    "broadcast": "tensor",
    "reduce": "tensor",
    "all_gather": "tensor",
    "all_gather_into_tensor": "input_tensor",
    "all_gather_single": "input_tensor",
    "_all_gather_base": "input_tensor",
    "reduce_scatter_tensor": "input",
    "reduce_scatter_single": "input",
    "_reduce_scatter_base": "input",
    "reduce_scatter": "input_list",
    "all_to_all_single": "input",
    "all_to_all": "input_tensor_list",
    "all_reduce_coalesced": "tensors",
    "send": "tensor",
    "isend": "tensor",
}


@dataclass
class Tally:
    """The calls to one function and the bytes they carried."""

    calls: int = 0
    bytes: int = 0


@dataclass
class Traffic:
    """What this process communicated in a ``count()`` block (payload bytes; see the module docstring)."""

    bytes: int = 0
    calls: int = 0
    by_function: dict[str, Tally] = field(default_factory=dict)

    def add(self, function: str, nbytes: int) -> None:
        self.bytes += nbytes
        self.calls += 1
        tally = self.by_function.setdefault(function, Tally())
        tally.calls += 1
        tally.bytes += nbytes


def payload_bytes(value: Any) -> int:
    """The bytes of a tensor, or of the tensors in a (nested) list or tuple."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(payload_bytes(v) for v in value)
    return 0


_active: list[Traffic] = []  # the open count() blocks, outermost first
_lock = threading.Lock()
_inside = threading.local()  # set while a counted call runs, so that the calls it makes are not counted again
_saved: list[tuple[Any, str, Callable[..., Any]]] = []  # (module, name, original) while patched


def _counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)
    argument = PAYLOAD[name]

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "depth", 0):
            return original(*args, **kwargs)
        _inside.depth = 1
        try:
            result = original(*args, **kwargs)
        finally:
            _inside.depth = 0
        nbytes = payload_bytes(signature.bind_partial(*args, **kwargs).arguments.get(argument))
        with _lock:
            for traffic in _active:
                traffic.add(name, nbytes)
        return result

    wrapper._descentlab_counting = True  # type: ignore[attr-defined]
    return wrapper


def _patch() -> None:
    modules = [dist, dist.distributed_c10d]
    wrappers: dict[int, Callable[..., Any]] = {}  # one wrapper per original function
    for name in PAYLOAD:
        for module in modules:
            original = getattr(module, name, None)
            if original is None or getattr(original, "_descentlab_counting", False):
                continue
            if id(original) not in wrappers:
                wrappers[id(original)] = _counting(name, original)
            _saved.append((module, name, original))
            setattr(module, name, wrappers[id(original)])


def _restore() -> None:
    while _saved:
        module, name, original = _saved.pop()
        setattr(module, name, original)


@contextlib.contextmanager
def count() -> Iterator[Traffic]:
    """Count the collectives this process calls inside the block; yields the ``Traffic``."""
    traffic = Traffic()
    with _lock:
        if not _active:
            _patch()
        _active.append(traffic)
    try:
        yield traffic
    finally:
        with _lock:
            del _active[next(i for i, t in enumerate(_active) if t is traffic)]
            if not _active:
                _restore()
