"""Any schedule, not only the registered ones: a function or a torch scheduler class.

Wherever descentlab takes a schedule name (``--schedule``, ``schedule:`` in a
strategies file, tune's space) it also takes

* ``path/to/file.py:fn`` or ``package.module:fn``, where
  ``fn(step, total_steps, **settings) -> multiplier`` of each param group's
  initial lr (``step`` counts optimizer steps from 0; the ``settings`` are the
  ``sched:`` / ``--sched K=V`` values, checked against its signature);
* a ``torch.optim.lr_scheduler.LRScheduler`` subclass such as
  ``torch.optim.lr_scheduler:OneCycleLR``, built as ``cls(optimizer, **sched)``
  and stepped once per optimizer step (``ReduceLROnPlateau`` and its subclasses:
  with the monitored metric after each evaluation, as the Trainer does);
* a name that an installed package adds through the entry-point group
  ``descentlab.schedules`` (a registered name wins).

The budget fills in the run's length as for the built-in schedules: a
function's ``total_steps``, and a class's ``total_steps`` or ``T_max`` when it
has one without a default (OneCycleLR, CosineAnnealingLR). Other length
settings whose default means something else (LinearLR's ``total_iters``, 5) are
left to the user. A function's multiplier must be finite and ≥ 0 at every step;
step 0 is checked when the scheduler is built, before any run starts.

Exact resume: a function scheduler's state is its step count and base lrs (the
function is not saved: it is imported again); a class's is its own
``state_dict()``, which must hold plain data to load with ``weights_only=True``
(torch's schedulers do).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .. import imports
from ..errors import UsageError
from . import registry
from .validate import ScheduleError

ENTRY_POINT_GROUP = "descentlab.schedules"
EXPECTED = ("a function fn(step, total_steps) -> lr multiplier, or a torch.optim.lr_scheduler.LRScheduler "
            "subclass")
#: a scheduler class's arguments that are the run's length, filled in from the budget when they have no default
HORIZONS = ("total_steps", "T_max")


@dataclass(frozen=True, eq=False)
class ForeignSchedule:
    """A schedule function or scheduler class that is not in descentlab's registry."""

    name: str
    target: Any
    kind: str  # "function" or "scheduler"
    summary: str = ""
    plugin: dict[str, Any] | None = None  # an entry point's provenance

    registered = False

    @property
    def label(self) -> str:
        return imports.short(self.name)

    def settings(self) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
        """``(accepted settings or None for **kwargs, {setting: default})``: the
        parameters after ``(step, total_steps)`` or ``(optimizer)``."""
        try:
            params = list(inspect.signature(self.target).parameters.values())
        except (TypeError, ValueError):
            return None, {}
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        skip = 2 if self.kind == "function" else 1
        params = params[skip:] if len(params) >= skip and all(p.kind in positional for p in params[:skip]) else params
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
        if self.kind == "scheduler":
            named = [p for p in named if p.name not in ("last_epoch", "verbose")]
        defaults = {p.name: p.default for p in named}  # inspect.Parameter.empty: required
        return (None if open_ended else tuple(p.name for p in named)), defaults

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings()[1].items() if v is not inspect.Parameter.empty}

    def takes(self, key: str) -> bool:
        accepted, _ = self.settings()
        return accepted is None or key in accepted

    def budget_defaults(self, total_steps: int | float, given: dict[str, Any]) -> dict[str, Any]:
        out = dict(given)
        if not math.isfinite(total_steps) or total_steps < 1:
            return out
        if self.kind == "function":
            out.setdefault("total_steps", int(total_steps))
            return out
        _, defaults = self.settings()
        for key in HORIZONS:
            if key in defaults and key not in out and defaults[key] in (inspect.Parameter.empty, None):
                out[key] = int(total_steps)
        return out

    def _check(self, kwargs: dict[str, Any]) -> None:
        accepted, defaults = self.settings()
        given = set(kwargs) - ({"total_steps"} if self.kind == "function" else set())
        text = "any keyword (**kwargs)" if accepted is None else ", ".join(accepted) or "none"
        if accepted is not None and given - set(accepted):
            raise UsageError(f"schedule {self.label} got unknown setting(s) {sorted(given - set(accepted))}; "
                             f"it takes: {text}")
        missing = [k for k, v in defaults.items() if v is inspect.Parameter.empty and k not in kwargs]
        if missing:
            raise UsageError(f"schedule {self.label} needs the setting(s) {missing} (give them in sched: or "
                             f"--sched K=V; it takes: {text})")

    def create(self, optimizer: Optimizer, **kwargs: Any) -> LRScheduler:
        """The scheduler on ``optimizer``; ``kwargs`` are its settings (``total_steps`` for a function)."""
        self._check(kwargs)
        if self.kind == "function":
            settings = dict(kwargs)
            total = settings.pop("total_steps", None)
            return FunctionScheduler(optimizer, self.target, total, settings, self.name)
        try:
            return self.target(optimizer, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the class rejected a setting
            args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no settings"
            raise UsageError(f"schedule {self.label} raised on ({args}): {imports.first_line(exc)}") from None

    def origin(self) -> dict[str, Any]:
        """``reference``, ``qualname`` and ``package``/``version`` or ``file``/``sha256``."""
        return imports.origin(self.target, self.name, self.plugin)


class FunctionScheduler(LRScheduler):
    """``lr_t = initial_lr × fn(t, total_steps, **settings)`` for every param group;
    ``step()`` once per optimizer step. Its state is plain data (the step, the
    base lrs); the function itself is the one the schedule's reference imports."""

    def __init__(self, optimizer: Optimizer, fn: Any, total_steps: int | None, settings: dict[str, Any],
                 name: str, last_epoch: int = -1) -> None:
        self.fn, self.total_steps, self.settings, self.name = fn, total_steps, dict(settings), name
        super().__init__(optimizer, last_epoch)

    def multiplier(self, t: int) -> float:
        try:
            value = self.fn(t, self.total_steps, **self.settings)
        except Exception as exc:  # noqa: BLE001 - the user's function failed
            raise ScheduleError(f"schedule {imports.short(self.name)} raised at step {t}: {imports.first_line(exc)}") from None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not ok:
            raise ScheduleError(f"schedule {imports.short(self.name)} returned {value!r} at step {t} "
                                f"(total_steps={self.total_steps}): expected a finite multiplier >= 0")
        return float(value)

    def get_lr(self) -> list[float]:
        m = self.multiplier(self.last_epoch)
        return [base * m for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "fn")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("name") not in (None, self.name):
            raise ScheduleError(f"invalid state_dict name={state_dict.get('name')!r}: expected a state of "
                                f"schedule {self.name!r}")
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in ("optimizer", "fn")})


# -- looking one up ------------------------------------------------------------------------


def _make(name: str, obj: Any, label: str, plugin: dict[str, Any] | None) -> ForeignSchedule:
    if inspect.isclass(obj):
        if not issubclass(obj, LRScheduler):
            raise UsageError(f"schedule {label} is the class {obj.__qualname__}, which is not a "
                             "torch.optim.lr_scheduler.LRScheduler subclass")
        kind = "scheduler"
    elif callable(obj):
        kind = "function"
        try:
            params = list(inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            params = None
        if params is not None:
            positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                          inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            if len(positional) < 2 and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
                raise UsageError(f"schedule {label} takes {len(positional)} positional argument(s); expected "
                                 "fn(step, total_steps) -> lr multiplier")
    else:
        raise UsageError(f"schedule {label} is a {type(obj).__name__}, not {EXPECTED}")
    return ForeignSchedule(name=name, target=obj, kind=kind, summary=imports.summary(obj), plugin=plugin)


CATALOG = imports.Catalog("schedule", ENTRY_POINT_GROUP, EXPECTED, _make, registry.available)
plugins = CATALOG.plugins


def lookup(schedule: Any) -> registry.ScheduleSpec | ForeignSchedule:
    """The registered spec of a name (aliases included), or a :class:`ForeignSchedule`."""
    if isinstance(schedule, (registry.ScheduleSpec, ForeignSchedule)):
        return schedule
    if isinstance(schedule, str):
        text = schedule.strip()
        if imports.is_reference(text):
            return CATALOG.reference(text)
        try:
            return registry.get(text)
        except ValueError:
            if not CATALOG.plugins():
                raise
        return CATALOG.plugin(text)
    if callable(schedule):
        return CATALOG.object(schedule)
    raise registry.invalid("name", schedule, "a schedule name, package.module:fn, path/to/file.py:fn or "
                           "an LRScheduler class")


def canonical(schedule: Any) -> str:
    return lookup(schedule).name


def is_registered(schedule: Any) -> bool:
    return isinstance(lookup(schedule), registry.ScheduleSpec)


def origin(schedule: Any) -> dict[str, Any]:
    spec = lookup(schedule)
    if isinstance(spec, ForeignSchedule):
        return spec.origin()
    return imports.own_origin("descentlab.schedules", spec.name)
