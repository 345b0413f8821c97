"""Learning-rate schedules: pure functions of the step, one torch scheduler.

    >>> from descentlab import schedules
    >>> sched = schedules.create("warmup_cosine", opt, warmup_steps=500, total_steps=10_000)
    >>> for batch in data:
    ...     loss(batch).backward(); opt.step(); opt.zero_grad()
    ...     sched.step()                      # once per optimizer step
    >>> sched.lr, sched.get_last_lr()         # group 0's lr, every group's
    >>> schedules.lr_curve("cosine", 100, base_lr=0.1, total_steps=100)   # for plots

Each schedule is a pure function ``lr_t = f(t, lr)`` (``functions.py``; the
docstrings give the formula and source), evaluated per param group relative
to the group's own lr. ``plateau`` also depends on the monitored metric
(``plateau.py``, ``sched.step(val_loss)``). Where torch has the schedule, the
lrs equal torch's (tests/schedules/).

``create``, ``get`` and ``budget_defaults`` also take any other schedule
(:mod:`.reference`): ``"path/to/file.py:fn"`` with ``fn(step, total_steps) ->
multiplier``, a ``torch.optim.lr_scheduler`` class such as
``"torch.optim.lr_scheduler:OneCycleLR"``, an entry point of
``descentlab.schedules``, or the function or class itself.

Warmup composes with every schedule: ``warmup_steps=W`` ramps linearly from
``warmup_start_factor`` (default 0) times the schedule's first lr up to it
over steps 0..W−1; from step W the schedule runs **shifted**, as if started
then (``step`` decays at W + step_size, milestones count from W, ``plateau``
watches the metrics from W on). ``total_steps`` still counts the whole run,
so ``cosine`` with warmup reaches ``min_lr`` at ``total_steps``, as the
Hugging Face and optax warmup schedules; ``warmup_cosine`` is exactly that.
"""

from . import functions
from .budget import budget_defaults
from .create import create, lr_curve
from .plateau import PlateauState, plateau_step
from .reference import ForeignSchedule, FunctionScheduler, canonical, is_registered, origin, plugins
from .reference import lookup as get
from .registry import Schedule, ScheduleSpec, available, resolve
from .scheduler import PlateauScheduler, Scheduler
from .validate import ScheduleArgumentError, ScheduleError

__all__ = [
    "budget_defaults",
    "canonical",
    "ForeignSchedule",
    "FunctionScheduler",
    "is_registered",
    "origin",
    "plugins",
    "PlateauScheduler",
    "PlateauState",
    "Schedule",
    "ScheduleArgumentError",
    "ScheduleError",
    "ScheduleSpec",
    "Scheduler",
    "available",
    "create",
    "functions",
    "get",
    "lr_curve",
    "plateau_step",
    "resolve",
]
