"""From a workload and a strategy to the objects a run trains: model, optimizer,
schedule, and the Trainer's workload-specific options. ``train`` and
``compare`` build their runs here, so both train a workload the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .. import optim, schedules
from ..errors import UsageError
from ..workloads import Workload

#: where a run's lr came from (summary.json, summary.csv's lr_source, the report)
LR_GIVEN = "given"
LR_RECIPE = "the workload's recipe"
LR_WORKLOAD = "the workload's default"
LR_CLASS = "the class default, untuned"


def initial_lr(wl: Workload, optimizer: Any, lr: float | None = None) -> tuple[float, str]:
    """``(lr, source)``: ``lr`` if given, else the workload's default for a
    registered optimizer, else the class's own default (its signature's ``lr``).
    With none of these it is a UsageError that says so."""
    if lr is not None:
        return float(lr), LR_GIVEN
    spec = optim.get(optimizer)
    if isinstance(spec, optim.OptimizerSpec):
        return wl.default_lr(spec.name), LR_WORKLOAD
    if spec.default_lr is not None:
        return spec.default_lr, LR_CLASS
    raise UsageError(f"no lr for optimizer {spec.label}: the workloads have defaults only for registered optimizers, "
                     "and its constructor has no default lr; give --lr (or lr: in the strategy)")


def build(wl: Workload, optimizer: str, hparams: dict[str, Any], schedule: str | None,
          schedule_kwargs: dict[str, Any], *, seed: int, total_steps: int | float,
          groups: Sequence[Mapping[str, Any]] = (), strategy: str = "ddp",
          diloco: Mapping[str, Any] | None = None, sync_batchnorm: bool = False) -> tuple[Any, Any, Any]:
    """``(model, optimizer, scheduler)`` for seed ``seed``: ``torch.manual_seed(seed)``
    before ``make_model()`` (the same initialisation for every strategy of a
    seed); the schedule's length-dependent settings default from ``total_steps``
    (:func:`descentlab.schedules.budget_defaults`). ``groups``: rules for
    :func:`descentlab.optim.param_groups`, which replace the workload's own
    ``param_groups``. ``strategy`` (:mod:`descentlab.distributed.strategy`):
    in a data-parallel group ``fsdp`` shards the model before the optimizer
    sees its parameters and ``zero`` wraps the optimizer; ``diloco`` wraps it
    in DiLoCo with the settings ``diloco``; the schedule drives what is
    stepped. ``sync_batchnorm``: in a group, BatchNorm layers become
    :class:`descentlab.distributed.syncbn.SyncBatchNorm` (before sharding)."""
    from ..distributed import strategy as strategies

    torch.manual_seed(seed)
    model = wl.make_model()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{wl.name}: make_model() returned {type(model).__name__}, expected a torch.nn.Module")
    if sync_batchnorm and strategies.distributed():
        from ..distributed import syncbn

        model = syncbn.convert(model)
    if strategy == "fsdp" and strategies.distributed():
        model = strategies.shard(model)
    opt, scheduler = optimizer_for(wl, model, optimizer, hparams, schedule, schedule_kwargs,
                                   total_steps=total_steps, groups=groups,
                                   wrap=lambda o: strategies.wrap_optimizer(o, strategy, **(diloco or {})))
    return model, opt, scheduler


def optimizer_for(wl: Workload, model: torch.nn.Module, optimizer: str, hparams: dict[str, Any],
                  schedule: str | None, schedule_kwargs: dict[str, Any], *, total_steps: int | float,
                  groups: Sequence[Mapping[str, Any]] = (), wrap=None) -> tuple[Any, Any]:
    """``(optimizer, scheduler)`` for an existing ``model`` (a pruned one, a
    student), with the param groups ``build`` would give it; ``wrap(opt)``, if
    given, is what the schedule and the Trainer step (a strategy's wrapper)."""
    if groups:
        params = optim.param_groups(model, *groups)
    elif wl.param_groups is not None:
        params = wl.param_groups(optimizer, model)
    else:
        params = model.parameters()
    opt = optim.create(optimizer, params, **hparams)
    if wrap is not None:
        opt = wrap(opt)
    scheduler = None
    if schedule not in (None, "constant"):
        kw = schedules.budget_defaults(schedule, total_steps, schedule_kwargs)
        scheduler = schedules.create(schedule, opt, **kw)
    return opt, scheduler


def trainer_options(wl: Workload) -> dict[str, Any]:
    """The Trainer's keyword arguments that come from the workload."""
    return {
        "metrics": {wl.metric: wl.metric_fn},
        "monitor": f"val_{wl.metric}",
        "mode": wl.metric_mode,
        "target_key": wl.target_key,
        "num_workers": wl.num_workers,
    }
