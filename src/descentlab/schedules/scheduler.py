"""One ``torch.optim.lr_scheduler.LRScheduler`` for every schedule.

The scheduler holds a :class:`~descentlab.schedules.registry.Schedule` (a pure
function of the step and its settings) and the step count; each ``step()``
sets every param group's lr to the function's value at the new step, relative
to the group's own initial lr. So its state is the step (and, for
``plateau``, the metric history's summary), ``state_dict()`` is plain data
(safe for ``torch.load(weights_only=True)``), and resuming is exact.

Being an ``LRScheduler``, it is accepted by Lightning and the Hugging Face
Trainer; the ``plateau`` one is also a ``ReduceLROnPlateau``, the type they
check to pass it the monitored metric.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from .plateau import RULE_SETTINGS, PlateauState, plateau_init, plateau_step
from .registry import Schedule, resolve
from .validate import ScheduleError


class Scheduler(LRScheduler):
    """Sets the optimizer's lrs from a schedule; call ``step()`` after each ``optimizer.step()``.

    Attributes (as torch's schedulers): ``optimizer``, ``base_lrs`` (each
    group's initial lr), ``last_epoch`` (the current step ``t``, 0 after
    construction). ``get_last_lr()`` gives every group's current lr and
    ``lr`` group 0's. Prefer :func:`descentlab.schedules.create`.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, last_epoch: int = -1) -> None:
        # LRScheduler.__init__ is not called: it would step through get_lr();
        # this does the same set-up (initial_lr, base_lrs, a first step) itself.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", float(group["lr"]))
        elif schedule.spec.fn is None:
            raise ScheduleError(
                f"invalid last_epoch={last_epoch}: 'plateau' depends on the metrics, not only the "
                "step; resume it with load_state_dict()"
            )
        elif any("initial_lr" not in g for g in groups):
            raise KeyError("resuming with last_epoch >= 0 needs 'initial_lr' in every param group")
        self.base_lrs = [float(g["initial_lr"]) for g in groups]
        self._bind(schedule)
        self._plateau: PlateauState | None = None
        if schedule.spec.fn is None:
            self._plateau = plateau_init(self.base_lrs, schedule.settings["mode"])
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def _bind(self, schedule: Schedule) -> None:
        self.schedule = schedule
        n = len(self.base_lrs)
        self._cores = [schedule.for_group(lr, i, n) for i, lr in enumerate(self.base_lrs)]

    # ---- reading

    @property
    def name(self) -> str:
        return self.schedule.name

    @property
    def lr(self) -> float:
        """The current lr of param group 0."""
        return self._last_lr[0]

    def get_last_lr(self) -> list[float]:
        """The current lr of every param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:
        """The lrs of every group at step ``last_epoch`` (pure: computing them changes nothing)."""
        t = self.last_epoch
        lrs = self._plateau.lrs if self._plateau is not None else [None] * len(self.base_lrs)
        return [
            self.schedule.lr_at(t, lr, core, current)
            for lr, core, current in zip(self.base_lrs, self._cores, lrs, strict=True)
        ]

    # ---- stepping

    def step(self, metric: Any = None, *, metrics: Any = None) -> None:  # type: ignore[override]
        """Advance one step. ``plateau`` takes the monitored metric: ``step(val_loss)``
        (``metrics=`` as torch's ReduceLROnPlateau); the others take none."""
        metric = metrics if metric is None else metric
        warmup = self.schedule.warmup_steps
        if self._plateau is None and metric is not None:
            raise ScheduleError(
                f"schedule {self.name!r} takes no metric: call step() once per optimizer step "
                "(only 'plateau' is stepped with a metric)"
            )
        self._step_count += 1
        self.last_epoch += 1
        if self._plateau is not None and self.last_epoch > warmup:
            if metric is None:
                raise ScheduleError(
                    "schedule 'plateau' is stepped with the monitored metric: step(val_loss)"
                )
            self._plateau = plateau_step(self._plateau, metric, **self._plateau_settings())
        self._apply()

    def _plateau_settings(self) -> dict[str, Any]:
        settings = {k: self.schedule.settings[k] for k in RULE_SETTINGS}
        settings["min_lr"] = tuple(core["min_lr"] for core in self._cores)
        return settings

    def _apply(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise RuntimeError(
                f"the optimizer has {len(groups)} param groups but the scheduler was made for "
                f"{len(self.base_lrs)}; create the scheduler after adding param groups"
            )
        lrs = self.get_lr()
        for group, lr in zip(groups, lrs, strict=True):
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = lrs

    # ---- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the schedule's name and settings, the step, the base lrs, and
        for ``plateau`` the metric state."""
        return {
            "name": self.name,
            "settings": copy.deepcopy(dict(self.schedule.settings)),
            "base_lrs": list(self.base_lrs),
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": list(self._last_lr),
            "plateau": None if self._plateau is None else self._plateau.as_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state (settings included, as torch's schedulers) and set the
        optimizer's lrs to those of the restored step."""
        if state_dict.get("name") != self.name:
            raise ScheduleError(
                f"invalid state_dict name={state_dict.get('name')!r}: expected a state of "
                f"schedule {self.name!r}"
            )
        self.base_lrs = [float(x) for x in state_dict["base_lrs"]]
        self._bind(resolve(state_dict["name"], state_dict["settings"]))
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        plateau = state_dict.get("plateau")
        self._plateau = None if plateau is None else PlateauState.from_dict(plateau)
        self._apply()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.schedule.settings.items())
        return f"{type(self).__name__}({self.name!r}, {args}, step={self.last_epoch})"


class PlateauScheduler(Scheduler, ReduceLROnPlateau):
    """The ``plateau`` schedule: the same :class:`Scheduler`, also an instance of
    ``ReduceLROnPlateau`` because Lightning and the Hugging Face Trainer decide
    by that type to call ``step(metric)`` (not ``step()``). No behaviour of
    ReduceLROnPlateau is used: Scheduler comes first in the method order."""
