"""Optimizer steps on sharded parameters: DTensors, as FSDP2's ``fully_shard`` makes them.

``fully_shard`` turns each parameter into a DTensor split on dim 0 over the
process group; its gradient is a DTensor of the same layout, already averaged
over the data-parallel ranks. :class:`~descentlab.optim.ChainOptimizer` then
steps on the *local shards*: the parameter's and gradient's local tensors, and
a :class:`LocalState` view of the state with each DTensor replaced by its
local tensor. Elementwise rules (SGD, Adam, ...) need nothing more, fused
kernels included. The few rules that look at a whole tensor call the helpers
below, which are identities (no copy, no collective) for plain tensors, so a
1-process step is bit for bit what it was:

* :func:`all_reduce_sum`: sums over the local shard, summed over the shards
  (norms for LAMB/LARS/Adafactor's clipping, Adafactor's column sums,
  Prodigy's dot products);
* :func:`full` and :func:`shard`: the whole tensor from the shards, and this
  process's shard of a whole tensor (Muon's Newton–Schulz);
* :func:`shape` and :func:`numel`: the parameter's global size.

State is stored as DTensors of the parameter's layout (``zeros_like(p)`` of a
DTensor is one), or of a layout derived from it (Adafactor's factored
statistics, :func:`zeros_reduced`), so ``state_dict()`` and
``torch.distributed.checkpoint``'s full state dicts see the global tensors.
See docs/sharding.md for each optimizer's collectives.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor


def _dtensor() -> Any:
    """DTensor's class, or ``()`` while ``torch.distributed.tensor`` is not imported:
    then no tensor can be a DTensor (``isinstance(t, ())`` is False). Not imported
    here: it costs about half a second, a third of ``import descentlab``
    (BENCHMARKS.md, "Fixed costs"), and only sharded training needs it (FSDP
    imports it first)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module.DTensor if module is not None else ()


def _placements() -> tuple[Any, Any]:
    """``(Replicate, Shard)``; called only where a DTensor exists, so the module is loaded."""
    from torch.distributed.tensor import Replicate, Shard

    return Replicate, Shard

__all__ = [
    "LocalState",
    "Sharding",
    "all_reduce_sum",
    "full",
    "is_sharded",
    "local",
    "localize",
    "norms",
    "numel",
    "shape",
    "shard",
    "sharding",
    "zeros_reduced",
]


def local(t: Any) -> Any:
    """The local tensor of a DTensor (sharing its memory); anything else unchanged."""
    return t.to_local() if isinstance(t, _dtensor()) else t


def is_sharded(tensors: Sequence[Any]) -> bool:
    """Whether any of ``tensors`` is a DTensor."""
    kind = _dtensor()
    return any(isinstance(t, kind) for t in tensors)


def _contiguous_stride(size: Sequence[int]) -> tuple[int, ...]:
    stride, step = [], 1
    for n in reversed(size):
        stride.append(step)
        step *= max(n, 1)
    return tuple(reversed(stride))


@dataclass(frozen=True, eq=False)
class Sharding:
    """How a tensor is split over processes: a DTensor's mesh, placements and global size."""

    mesh: Any
    placements: tuple[Any, ...]
    shape: torch.Size
    stride: tuple[int, ...]

    @classmethod
    def of(cls, t: DTensor) -> Sharding:
        Replicate, Shard = _placements()
        for placement in t.placements:
            if not isinstance(placement, (Shard, Replicate)):
                raise TypeError(
                    f"cannot step a DTensor with placement {placement!r} (of {tuple(t.placements)}): "
                    "expected Shard or Replicate placements, as fully_shard makes"
                )
        return cls(t.device_mesh, tuple(t.placements), t.shape, tuple(t.stride()))

    def wrap(self, local_tensor: Tensor) -> DTensor:
        """A DTensor of this layout whose local tensor is ``local_tensor`` (no copy, no check)."""
        return _dtensor().from_local(
            local_tensor, self.mesh, self.placements, run_check=False, shape=self.shape, stride=self.stride
        )

    def reduced(self, dim: int) -> Sharding:
        """The layout of a sum over ``dim`` with keepdim: size 1 there, and replicated
        over the mesh dimensions that split ``dim``."""
        dim = dim % len(self.shape)
        size = list(self.shape)
        size[dim] = 1
        Replicate, _ = _placements()
        placements = tuple(Replicate() if p.is_shard(dim) else p for p in self.placements)
        return Sharding(self.mesh, placements, torch.Size(size), _contiguous_stride(size))

    def groups_over(self, dims: Sequence[int] | None) -> tuple[Any, ...]:
        """The process groups to sum over for a reduction over tensor ``dims`` (None: all)."""
        ndim = len(self.shape)
        _, Shard = _placements()
        wanted = None if dims is None else {d % ndim for d in dims}
        return tuple(
            self.mesh.get_group(i)
            for i, p in enumerate(self.placements)
            if isinstance(p, Shard) and (wanted is None or p.dim % ndim in wanted)
        )


class LocalState(dict):
    """A DTensor parameter's state for one step, with each DTensor replaced by its
    local tensor; ``sharding`` is the parameter's layout, for the helpers of this module.

    :meth:`store` writes back what the step replaced or added: tensors into
    DTensors of the layout they had, new tensors of the shard's shape into
    DTensors of the parameter's layout, anything else as it is.
    """

    def __init__(self, state: Mapping[str, Any], param: DTensor):
        super().__init__((k, local(v)) for k, v in state.items())
        self.sharding = Sharding.of(param)
        self._local_shape = param.to_local().shape
        self._given = dict(self)

    def store(self, state: dict) -> None:
        for key, value in self.items():
            if self._given.get(key) is value:
                continue
            old = state.get(key)
            if isinstance(value, Tensor) and isinstance(old, _dtensor()) and old.to_local().shape == value.shape:
                state[key] = Sharding.of(old).wrap(value)
            elif isinstance(value, Tensor) and value.shape == self._local_shape and value.ndim > 0:
                state[key] = self.sharding.wrap(value)
            else:
                state[key] = value


def localize(params: list[Tensor], grads: list[Tensor] | None, states: list[dict]):
    """The local tensors of ``params`` and ``grads`` and a :class:`LocalState` view of
    each DTensor parameter's state (plain parameters and their states unchanged)."""
    views: list[dict] = []
    DTensor = _dtensor()
    for i, (p, s) in enumerate(zip(params, states)):
        if not isinstance(p, DTensor):
            views.append(s)
            continue
        if grads is not None:
            g = grads[i]
            if not isinstance(g, DTensor) or tuple(g.placements) != tuple(p.placements):
                where = tuple(g.placements) if isinstance(g, DTensor) else "a plain tensor"
                raise ValueError(
                    f"the gradient of a DTensor parameter of shape {tuple(p.shape)} with placements "
                    f"{tuple(p.placements)} is {where}; expected a DTensor of the same placements"
                )
        views.append(LocalState(s, p))
    local_grads = None if grads is None else [local(g) for g in grads]
    return [local(p) for p in params], local_grads, views


def sharding(state: Mapping[str, Any]) -> Sharding | None:
    """The layout of the parameter whose (local) state this is; None when not sharded."""
    return getattr(state, "sharding", None)


def shape(t: Tensor, state: Mapping[str, Any]) -> torch.Size:
    """The global shape of the parameter ``t`` (a local shard or a plain tensor)."""
    s = sharding(state)
    return t.shape if s is None else s.shape


def numel(t: Tensor, state: Mapping[str, Any]) -> int:
    """The global number of elements of the parameter ``t``."""
    return shape(t, state).numel()


def all_reduce_sum(
    values: list[Tensor], states: Sequence[Mapping[str, Any]], dims: Sequence[int] | None = None
) -> list[Tensor]:
    """``values[i]``, a sum over the local shard of tensor i (over its ``dims``, keepdim;
    None: over all of it), summed over the processes holding the other shards.

    Unsharded values are returned as they are (the same objects). Values that need
    the same process groups and share a dtype go in one all-reduce.
    """
    buckets: dict[tuple, list[int]] = {}
    for i, state in enumerate(states):
        s = sharding(state)
        groups = () if s is None else s.groups_over(dims)
        if groups:
            buckets.setdefault((groups, values[i].dtype), []).append(i)
    if not buckets:
        return values
    out = list(values)
    for (groups, _), idx in buckets.items():
        flat = torch.cat([values[i].reshape(-1) for i in idx])
        for group in groups:
            dist.all_reduce(flat, group=group)
        for i, part in zip(idx, flat.split([values[i].numel() for i in idx])):
            out[i] = part.view(values[i].shape)
    return out


class _Layout:
    """A stand-in for a parameter's state that only carries its layout (for :func:`all_reduce_sum`)."""

    def __init__(self, t: Tensor):
        self.sharding = Sharding.of(t) if isinstance(t, _dtensor()) else None


def norms(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The L2 norm of each of ``tensors`` (a DTensor's: of the whole tensor) as local 0-d
    tensors, with one all-reduce per set of process groups and dtype, not one per DTensor
    as ``DTensor.norm()`` makes. For plain tensors, ``torch._foreach_norm``'s values."""
    if not tensors:
        return []
    squares = [n.square() for n in torch._foreach_norm([local(t) for t in tensors])]
    return [s.sqrt() for s in all_reduce_sum(squares, [_Layout(t) for t in tensors])]


def full(t: Tensor, state: Mapping[str, Any]) -> Tensor:
    """The whole tensor whose local shard is ``t`` (an all-gather); ``t`` itself when unsharded."""
    s = sharding(state)
    return t if s is None else s.wrap(t.contiguous()).full_tensor()


def shard(t: Tensor, state: Mapping[str, Any]) -> Tensor:
    """This process's shard of the whole tensor ``t`` (a view, no communication)."""
    s = sharding(state)
    if s is None:
        return t
    Replicate, _ = _placements()
    whole = _dtensor().from_local(t, s.mesh, [Replicate()] * s.mesh.ndim, run_check=False)
    return whole.redistribute(s.mesh, s.placements).to_local()


def zeros_reduced(p: Tensor, dim: int) -> Tensor:
    """Zeros of ``p``'s shape with size 1 at ``dim`` (a keepdim statistic of ``p``);
    for a DTensor ``p``, a DTensor replicated over the mesh dimensions that split ``dim``."""
    size = list(p.shape)
    size[dim] = 1
    if not isinstance(p, _dtensor()):
        return p.new_zeros(size)
    layout = Sharding.of(p).reduced(dim)
    local_size = list(p.to_local().shape)
    local_size[dim] = 1
    return layout.wrap(p.to_local().new_zeros(local_size))
