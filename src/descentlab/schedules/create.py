"""`create(name, optimizer, **kw)` and `lr_curve(name, steps, base_lr=..., **kw)`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer

from .plateau import RULE_SETTINGS, plateau_init, plateau_step
from .registry import resolve
from .scheduler import PlateauScheduler, Scheduler
from .validate import ScheduleError, invalid, is_int, is_real


def create(name: Any, optimizer: Optimizer, **kwargs: Any) -> Scheduler:
    """A scheduler for ``optimizer``, e.g. ``create("cosine", opt, total_steps=10_000)``.

    Step it once per optimizer step (``plateau``: ``sched.step(metric)``).
    ``kwargs`` are the schedule's arguments (see each function's docstring in
    ``descentlab.schedules.functions``) plus ``warmup_steps`` and
    ``warmup_start_factor``, accepted by every schedule. An unknown name or
    argument, a missing or invalid one raises ValueError naming it. ``name`` may
    also be any schedule (:mod:`.reference`): a function ``fn(step, total_steps)``
    or an ``LRScheduler`` class, by reference or as the object.
    """
    from .reference import ForeignSchedule, lookup

    spec = lookup(name)
    if isinstance(spec, ForeignSchedule):
        return spec.create(optimizer, **kwargs)
    schedule = resolve(name, kwargs)
    cls = PlateauScheduler if schedule.spec.fn is None else Scheduler
    return cls(optimizer, schedule)


def lr_curve(
    name: str,
    steps: int,
    base_lr: float = 0.1,
    *,
    metrics: Sequence[float] | None = None,
    **kwargs: Any,
) -> list[float]:
    """The lrs of the first ``steps`` optimizer steps (t = 0 .. steps − 1) of one
    param group with lr ``base_lr``; the same values as the scheduler's. For
    ``cyclic``, ``base_lr`` is also the cycle's lower bound (torch's CyclicLR
    ``base_lr`` replaces the optimizer's lr, so the two are the same thing).

    ``plateau`` needs ``metrics``: ``metrics[i]`` is the metric that step()
    gets after optimizer step i (ignored during the warmup); ``steps − 1``
    of them.
    """
    if not is_int(steps) or steps < 0:
        raise invalid("steps", steps, "an integer >= 0")
    if not is_real(base_lr) or base_lr < 0:
        raise invalid("base_lr", base_lr, "a learning rate >= 0")
    schedule = resolve(name, kwargs)
    core = schedule.for_group(float(base_lr))
    if schedule.spec.fn is not None:
        return [schedule.lr_at(t, base_lr, core) for t in range(steps)]

    warmup = schedule.warmup_steps
    needed = max(0, steps - 1)
    if metrics is None or len(metrics) < needed:
        got = "none" if metrics is None else len(metrics)
        raise ScheduleError(f"invalid metrics (got {got}): 'plateau' needs {needed} metrics for {steps} steps")
    settings = {k: schedule.settings[k] for k in RULE_SETTINGS}
    state = plateau_init([base_lr], settings["mode"])
    curve = []
    for t in range(steps):
        if t > warmup:
            state = plateau_step(state, metrics[t - 1], min_lr=(core["min_lr"],), **settings)
        curve.append(schedule.lr_at(t, base_lr, core, state.lrs[0]))
    return curve
