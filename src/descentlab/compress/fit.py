"""Training a given model on a workload with its recipe: the dense model, the
fine-tuning of a pruned one, a student. ``train`` builds its model from a seed;
compression needs to go on training the model it has."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..experiment.build import build, optimizer_for, trainer_options
from ..experiment.config import TrainConfig
from ..experiment.run import resolve
from ..train.callbacks import Callback, ProgressBar
from ..train.trainer import Trainer
from ..workloads import Workload


@dataclass
class Fitted:
    """A model and the optimizer state it was trained with (to fine-tune it on)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    trainer: Trainer


def plan_for(workload: str, *, seed: int = 0, steps: int | None = None, data_dir: str | None = None,
             optimizer: Any = None, lr: float | None = None, opt: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe of ``workload`` (a name or ``file.py:FUNC``) as ``train`` resolves
    it (``steps``: another budget, with the schedule's phases stretched to it);
    ``optimizer`` (any optimizer, :mod:`descentlab.optim.reference`), ``lr`` and
    ``opt`` replace the recipe's, as ``train --optimizer/--lr/--opt``."""
    from ..experiment.config import validate

    return resolve(validate(TrainConfig(workload=workload, seed=seed, steps=steps, data_dir=data_dir,
                                        optimizer=optimizer, lr=lr, opt=dict(opt or {}))))


def train_dense(plan: dict[str, Any], *, seed: int, quiet: bool = True, callbacks: Sequence[Callback] = ()) -> Fitted:
    """The recipe's model of seed ``seed``, trained as ``train`` trains it."""
    wl = plan["workload"]
    model, opt, sched = build(wl, plan["optimizer"], plan["hparams"], plan["schedule"], plan["schedule_kwargs"],
                              seed=seed, total_steps=plan["total_steps"])
    return fit(plan, model, opt, sched, seed=seed, quiet=quiet, callbacks=callbacks)


def new_optimizer(plan: dict[str, Any], model: nn.Module, *, steps: int | None = None) -> tuple[Any, Any]:
    """A fresh ``(optimizer, scheduler)`` of the recipe for ``model`` over ``steps``."""
    return optimizer_for(plan["workload"], model, plan["optimizer"], plan["hparams"], plan["schedule"],
                         plan["schedule_kwargs"], total_steps=steps or plan["total_steps"])


def schedule_for(plan: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    """The recipe's schedule over ``plan``'s budget on an existing optimizer, whose
    state is kept: fine-tuning continues the moments of the run before it, and
    the schedule starts again from the recipe's lr (torch's ``initial_lr``)."""
    from .. import schedules

    if plan["schedule"] in (None, "constant"):
        return None
    kw = schedules.budget_defaults(plan["schedule"], plan["total_steps"], plan["schedule_kwargs"])
    return schedules.create(plan["schedule"], optimizer, **kw)


def fit(plan: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any = None, *,
        seed: int, steps: int | None = None, loss_fn: Any = "workload", train: Any = None,
        callbacks: Sequence[Callback] = (), quiet: bool = True) -> Fitted:
    """Train ``model`` with ``optimizer`` for ``steps`` (default: the recipe's
    budget) on the workload's training split (or ``train``), validating as
    ``train`` does; the final weights are kept (no best-weights restore)."""
    wl = plan["workload"]
    total = steps or plan["total_steps"]
    trainer = Trainer(
        model, optimizer, wl.loss_fn if loss_fn == "workload" else loss_fn, scheduler=scheduler,
        callbacks=[*callbacks, ProgressBar(enabled=False if quiet else None)],
        batch_size=plan["batch_size"], seed=seed, **trainer_options(wl),
        eval_every=max(1, total // 20),
    )
    trainer.fit(wl.train if train is None else train, wl.val, max_steps=total)
    return Fitted(model, optimizer, trainer)


def evaluate(wl: Workload, model: nn.Module, split: str = "test") -> dict[str, float]:
    """The workload's loss and metric on a split, in eval mode (the model's mode is kept)."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    trainer = Trainer(model, probe, wl.loss_fn, **trainer_options(wl), device=_device_of(model))
    return trainer.evaluate(getattr(wl, split))


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def copy_run(fitted: Fitted, plan: dict[str, Any]) -> tuple[nn.Module, torch.optim.Optimizer]:
    """An independent copy of a trained model and of its optimizer state."""
    model = copy.deepcopy(fitted.model)
    opt, _ = new_optimizer(plan, model)
    # A deep copy: load_state_dict keeps CPU tensors of the right dtype as they are, so the
    # copy's in-place steps would otherwise write into the original optimizer's moments.
    opt.load_state_dict(copy.deepcopy(fitted.optimizer.state_dict()))
    return model, opt
