"""How the processes of a data-parallel run share the work (``--strategy``),
and how a checkpoint of any of them becomes one ordinary file.

* ``ddp`` (default): every process holds the model and the optimizer state;
  ``DistributedDataParallel`` all-reduces the gradients (optionally through a
  communication hook, :mod:`.hooks`).
* ``zero``: ZeRO stage 1 (Rajbhandari et al. 2020): DDP for the gradients, and
  the optimizer state sharded with ``torch.distributed.optim.ZeroRedundancyOptimizer``
  around the named optimizer — each process steps the parameters it owns and
  broadcasts them.
* ``fsdp``: FSDP2, ``torch.distributed.fsdp.fully_shard`` on each of the
  model's repeated blocks (transformer or residual blocks, :func:`blocks`) and on
  the root, which holds the rest, tied parameters included: parameters, gradients and optimizer
  state are DTensors sharded on their first dimension (the optimizers'
  collectives under sharding: docs/sharding.md).
* ``diloco``: :class:`.diloco.DiLoCo` around the named optimizer — no
  gradient all-reduce; the parameters are averaged through an outer Nesterov
  step every ``sync_every`` steps.

Checkpoints stay the one-process format whatever the strategy, so that they
load in one process and in any number of processes: the model's full
state_dict and the optimizer's full state_dict keyed by parameter index, as
``torch.optim`` writes them, gathered on rank 0 (ZeRO: ``consolidate_state_dict``;
FSDP: ``torch.distributed.checkpoint.state_dict.get_model_state_dict`` /
``get_optimizer_state_dict`` with ``full_state_dict=True``). torch's sharded
DCP file format is not used: its metadata file is read with ``pickle.load``,
and every checkpoint this project loads goes through ``torch.load(weights_only=True)``.
DiLoCo's processes differ between synchronisations, so its checkpoints also
hold every rank's parameters and optimizer state (``"ranks"``), and resume in
the same number of processes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UsageError

STRATEGIES = ("ddp", "zero", "fsdp", "diloco")


def check(strategy: str, comm_hook: str | None = None) -> str:
    if strategy not in STRATEGIES:
        raise UsageError(f"invalid strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if comm_hook is not None:
        from .hooks import HOOKS

        if comm_hook not in HOOKS:
            raise UsageError(f"invalid comm_hook={comm_hook!r}: expected one of {', '.join(HOOKS)}")
        if strategy not in ("ddp", "zero"):
            raise UsageError(f"invalid comm_hook={comm_hook!r} with strategy={strategy!r}: "
                             "communication hooks are DDP's (strategies ddp and zero)")
    return strategy


#: optimizers whose step couples every parameter of a group (Prodigy's step size d sums
#: over all of them): under ZeRO each process's optimizer holds only its own parameters
#: and would compute another d (measured: 0.37 relative after 30 steps), so they are refused
GROUP_COUPLED = ("prodigy",)


def check_optimizer(strategy: str, optimizer: str) -> None:
    if strategy == "zero" and optimizer in GROUP_COUPLED:
        raise UsageError(f"invalid strategy='zero' for optimizer={optimizer!r}: its step size sums over every "
                         "parameter of its group, and ZeRO gives each process only its share of them; "
                         "use --strategy ddp or fsdp")


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# -- building ------------------------------------------------------------------------


#: containers, never a block of their own: their children are the blocks
_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)


def blocks(model: nn.Module) -> list[nn.Module]:
    """The modules FSDP shards as groups of their own: the model's repeated blocks.

    A block is a module of a type that occurs at least twice in the model and
    holds parameters in at least two of its submodules (a transformer block, a
    residual block; not a leaf such as a Linear, not a container), taken
    outermost first. A block any of whose parameters is also used outside it (a
    tied weight) is left to its parent, so tied parameters always share one
    group — here the root's. Everything that is not inside a block (embeddings,
    heads, norms) is in the root's group. A model without repeated blocks (an
    MLP) is one group. Grouping by blocks is what FSDP's own guidance and
    torchtitan do: one all-gather and one reduce-scatter per block and step,
    instead of one per leaf module (a torchvision ResNet-18 wrapped leaf by leaf
    made a step about 10x slower than DDP on 2 CPU processes).
    """
    modules = list(model.modules())
    counts: dict[type, int] = {}
    for m in modules:
        counts[type(m)] = counts.get(type(m), 0) + 1

    def holders(m: nn.Module) -> int:
        return sum(1 for sub in m.modules() if any(True for _ in sub.parameters(recurse=False)))

    # every place a parameter is used: a tied one appears under two names
    owners: dict[int, set[int]] = {}
    for m in modules:
        for p in m.parameters(recurse=False):
            owners.setdefault(id(p), set()).add(id(m))

    chosen: list[nn.Module] = []
    inside: set[int] = set()
    for m in modules[1:]:  # model.modules() is depth-first, parents before their children
        if id(m) in inside or isinstance(m, _CONTAINERS) or counts[type(m)] < 2 or holders(m) < 2:
            continue
        own = {id(sub) for sub in m.modules()}
        if any(not owners[id(p)] <= own for p in m.parameters()):
            continue  # a parameter tied to one outside: the block stays in its parent's group
        chosen.append(m)
        inside |= own
    return chosen


def shard(model: nn.Module) -> nn.Module:
    """FSDP2: ``fully_shard`` each of the model's :func:`blocks`, then the root
    (which takes every parameter outside them, tied ones included)."""
    from torch.distributed.fsdp import fully_shard

    for module in blocks(model):
        fully_shard(module)
    fully_shard(model)
    return model


def local_optimizer_class(optimizer: torch.optim.Optimizer) -> Callable[..., torch.optim.Optimizer]:
    """A constructor ``(params, **defaults)`` of optimizers like ``optimizer``
    (the same class, chain and kernels) for ZeroRedundancyOptimizer's shard.

    An object of the same class with the same attributes, re-initialised
    through ``torch.optim.Optimizer.__init__``: fresh ``state``,
    ``param_groups`` and hooks, the rest (a chain's transforms, its fused step)
    shared, so any named optimizer works, not only classes whose constructor
    takes ``(params, **defaults)``. An optimizer that is not descentlab's
    (:mod:`descentlab.optim.reference`) is built by its own constructor with the
    hyperparameters it was first given (its ``__init__`` may set up more than
    ``Optimizer.__init__`` does). (``copy.copy`` would not do: an
    Optimizer's pickling state is only its defaults, state and groups.)"""

    rebuild = getattr(optimizer, "_descentlab_rebuild", None)
    if rebuild is not None:  # an optimizer that is not descentlab's: its own constructor, as it was called
        return rebuild

    def make(params: Any, **defaults: Any) -> torch.optim.Optimizer:
        local = object.__new__(type(optimizer))
        local.__dict__.update(optimizer.__dict__)
        torch.optim.Optimizer.__init__(local, params, {**optimizer.defaults, **defaults})
        return local

    return make


def wrap_optimizer(optimizer: torch.optim.Optimizer, strategy: str, **diloco: Any) -> torch.optim.Optimizer:
    """The optimizer a strategy steps: ZeroRedundancyOptimizer around it
    (``zero``), DiLoCo around it (``diloco``), else itself."""
    if strategy == "zero" and distributed():
        from torch.distributed.optim import ZeroRedundancyOptimizer

        check_optimizer(strategy, getattr(optimizer, "name", ""))
        groups = [{k: v for k, v in g.items()} for g in optimizer.param_groups]
        return ZeroRedundancyOptimizer(groups, optimizer_class=local_optimizer_class(optimizer), **optimizer.defaults)
    if strategy == "diloco":
        from .diloco import DiLoCo

        return DiLoCo(optimizer, **diloco)
    return optimizer


# -- what the Trainer asks -----------------------------------------------------------


def is_fsdp(model: nn.Module) -> bool:
    # not imported to ask (about 0.2 s): no model is fully_shard's before FSDP is loaded
    module = sys.modules.get("torch.distributed.fsdp")
    return module is not None and isinstance(model, module.FSDPModule)


def is_zero(optimizer: Any) -> bool:
    # not imported to ask: torch.distributed.optim compiles TorchScript on import
    module = sys.modules.get("torch.distributed.optim.zero_redundancy_optimizer")
    return module is not None and isinstance(optimizer, module.ZeroRedundancyOptimizer)


def averages_parameters(optimizer: Any) -> bool:
    """True for optimizers that keep the processes together themselves (DiLoCo): no DDP."""
    return bool(getattr(optimizer, "averages_parameters", False))


def gathers(model: nn.Module, optimizer: Any) -> bool:
    """True when a checkpoint's state is gathered by a collective (every rank must take part)."""
    return distributed() and (is_fsdp(model) or is_zero(optimizer) or averages_parameters(optimizer))


def _full() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True)


def _resharded(model: nn.Module) -> None:
    """Every FSDP group back to its shards. After a forward without backward (an
    evaluation), the root's group stays unsharded (FSDP2 does not reshard the root
    after forward), its parameters plain tensors; torch's state-dict functions
    expect the sharded DTensors ("aten.copy_.default got mixed torch.Tensor and DTensor")."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's full state_dict, on every rank (FSDP: gathered; a collective)."""
    if is_fsdp(model):
        _resharded(model)
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_full())
    return model.state_dict()


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full state_dict (every rank holds it; FSDP keeps its own shard)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        _resharded(model)
        set_model_state_dict(model, state, options=_full())
    else:
        model.load_state_dict(state)


def _fqns(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def optimizer_state(model: nn.Module, optimizer: Any) -> dict[str, Any] | None:
    """The optimizer's full state_dict in ``torch.optim``'s format (state keyed
    by parameter index), on rank 0 (None elsewhere under ZeRO). A collective
    under ZeRO, FSDP and DiLoCo."""
    if is_zero(optimizer) and distributed():
        optimizer.consolidate_state_dict(to=0)
        return optimizer.state_dict() if dist.get_rank() == 0 else None
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        _resharded(model)
        full = get_optimizer_state_dict(model, optimizer, options=_full())
        index = {fqn: i for i, fqn in enumerate(_fqns(model, optimizer))}
        return {"state": {index[k]: v for k, v in full["state"].items()},
                "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in full["param_groups"]]}
    return optimizer.state_dict()


def load_optimizer_state(model: nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        _resharded(model)
        fqns = _fqns(model, optimizer)
        by_name = {"state": {fqns[i]: v for i, v in state["state"].items()},
                   "param_groups": [{**g, "params": [fqns[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(model, optimizer, by_name, options=_full())
    else:
        optimizer.load_state_dict(state)


def same_buffers(model: nn.Module, world: int) -> None:
    """Rank 0's buffers on every rank (a collective; nothing in one process).

    Training updates buffers locally — BatchNorm's running statistics from each
    process's own part of the batch, unless synchronized — and DDP broadcasts rank
    0's only at the next training forward. Evaluated with different statistics,
    the ranks would see different validation metrics and decide differently
    (a new best, whose state FSDP gathers with a collective only one rank then
    joins: gloo aborted with "Received data size doesn't match expected size").
    Checkpoints keep rank 0's, so this is what every evaluation uses.
    """
    if world <= 1 or not distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def every_rank(value: Any) -> list[Any] | None:
    """``value`` of every rank, on rank 0 (None elsewhere): DiLoCo's per-rank state."""
    if not distributed():
        return [value]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def all_true(flag: bool, device: torch.device) -> bool:
    """``flag`` and-ed over the processes."""
    if not distributed():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


__all__ = ["STRATEGIES", "check", "load_model_state", "load_optimizer_state", "model_state", "optimizer_state",
           "shard", "wrap_optimizer"]
