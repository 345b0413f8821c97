"""The one table of named schedules, and the checks of their arguments.

A :class:`ScheduleSpec` names a pure function of the step (``functions.py``)
with its arguments and defaults; :func:`resolve` checks a user's arguments
against it and returns a :class:`Schedule`, the settings the scheduler and
``lr_curve`` evaluate.

Warmup, for every schedule: ``warmup_steps`` (default 0) linear steps from
``warmup_start_factor`` (default 0) times the schedule's first value up to it;
then the schedule runs **shifted**, as if started when the warmup ends. An
argument that is the length of the run (``total_steps``) still counts the
whole run, warmup included, so the schedule proper gets ``total_steps −
warmup_steps`` steps (as the Hugging Face and optax warmup schedules).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..names import unknown_name
from . import functions as F
from .validate import (
    ScheduleArgumentError,
    boolean,
    choice,
    pick_group,
    integer,
    invalid,
    is_int,
    per_group_real,
    real,
)

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "<required>"})()
WARMUP = {"warmup_steps": 0, "warmup_start_factor": 0.0}
#: settings that may be a list, one value per param group
PER_GROUP = ("min_lr", "max_lr", "base_lr")


@dataclass(frozen=True)
class ScheduleSpec:
    """A named schedule.

    Attributes:
        name: the registry name (``schedules.create(name, ...)``).
        summary: one line for ``descentlab list schedules``.
        fn: the pure function ``fn(t, lr, **settings) -> lr_t``; ``None`` for
            ``plateau``, whose lr depends on the metrics (``plateau.py``).
        defaults: its arguments and defaults (``REQUIRED`` for none), warmup
            arguments included.
        reference: what it equals (text), e.g. "torch.optim.lr_scheduler.StepLR".
        horizon: the argument that counts the run's steps, shortened by warmup.
    """

    name: str
    summary: str
    fn: Callable[..., float] | None
    defaults: Mapping[str, Any]
    reference: str
    horizon: str | None = None


def _spec(name, summary, fn, reference, horizon=None, **defaults) -> ScheduleSpec:
    return ScheduleSpec(name, summary, fn, {**WARMUP, **defaults}, reference, horizon)


_SPECS = [
    _spec("constant", "the optimizer's lr, unchanged", F.constant, "-"),
    _spec("step", "lr * gamma every step_size steps", F.step, "torch StepLR", step_size=REQUIRED, gamma=0.1),
    _spec("multistep", "lr * gamma at each milestone", F.multistep, "torch MultiStepLR",
          milestones=REQUIRED, gamma=0.1),
    _spec("exponential", "lr * gamma^t", F.exponential, "torch ExponentialLR", gamma=REQUIRED),
    _spec("inverse_time", "lr / (1 + decay * t)", F.inverse_time, "Keras optimizer decay", decay=REQUIRED),
    _spec("cosine", "cosine annealing to min_lr at total_steps", F.cosine, "torch CosineAnnealingLR",
          "total_steps", total_steps=REQUIRED, min_lr=0.0),
    _spec("warmup_cosine", "linear warmup, then cosine to min_lr at total_steps", F.cosine,
          "HF get_cosine_schedule_with_warmup", "total_steps",
          warmup_steps=REQUIRED, total_steps=REQUIRED, min_lr=0.0),
    _spec("cyclic", "triangular cycles between base_lr and max_lr", F.cyclic, "torch CyclicLR",
          base_lr=None, max_lr=REQUIRED, step_size_up=2000, step_size_down=None, mode="triangular", gamma=1.0),
    _spec("one_cycle", "1cycle: up to max_lr, then down far below", F.one_cycle, "torch OneCycleLR",
          "total_steps", max_lr=None, total_steps=REQUIRED, pct_start=0.3, anneal_strategy="cos",
          div_factor=25.0, final_div_factor=1e4, three_phase=False),
    _spec("polynomial", "lr * (1 - t/total_steps)^power", F.polynomial, "torch PolynomialLR",
          "total_steps", total_steps=REQUIRED, power=1.0),
    _spec("wsd", "warmup, stable lr, then decay to min_lr", F.wsd, "MiniCPM / Hägele et al. 2024",
          warmup_steps=0, stable_steps=REQUIRED, decay_steps=REQUIRED, min_lr=0.0, decay_type="linear"),
    _spec("plateau", "lr * factor when the metric stops improving", None, "torch ReduceLROnPlateau",
          mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0,
          min_lr=0.0, eps=1e-8),
]
_REGISTRY: dict[str, ScheduleSpec] = {s.name: s for s in _SPECS}
_ALIASES = {
    "onecycle": "one_cycle", "1cycle": "one_cycle", "cosine_annealing": "cosine", "poly": "polynomial",
    "reduce_on_plateau": "plateau", "reduce_lr_on_plateau": "plateau", "warmup_stable_decay": "wsd",
    "multi_step": "multistep", "exp": "exponential",
}


def available() -> list[str]:
    """Names of the schedules, in table order."""
    return list(_REGISTRY)


def get(name: str) -> ScheduleSpec:
    """The spec of ``name``; an unknown name raises ValueError listing close matches."""
    if not isinstance(name, str):
        raise invalid("name", name, "a schedule name, one of " + ", ".join(_REGISTRY))
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise unknown_name("schedule", name, _REGISTRY, _ALIASES)


# ---- argument checks: one per argument name, then the cross-checks of a schedule


def _milestones(value: Any, schedule: str) -> list[int]:
    items = list(value) if isinstance(value, (list, tuple, range)) else None
    if items is None or not all(is_int(m) and m >= 0 for m in items):
        raise invalid("milestones", value, "a list of integer steps >= 0", schedule)
    if any(b <= a for a, b in zip(items, items[1:])):
        raise invalid("milestones", value, "strictly increasing steps", schedule)
    return [int(m) for m in items]


def _optional(check: Callable[[str, Any, str], Any]) -> Callable[[str, Any, str], Any]:
    return lambda n, v, s: None if v is None else check(n, v, s)


def _positive_int(n, v, s):
    return integer(n, v, s, minimum=1)


_MODES = {"cyclic": ["triangular", "triangular2", "exp_range"], "plateau": ["min", "max"]}


_ARGS: dict[str, Callable[[str, Any, str], Any]] = {
    "warmup_steps": lambda n, v, s: integer(n, v, s, minimum=0),
    "warmup_start_factor": lambda n, v, s: real(n, v, s, minimum=0.0, maximum=1.0),
    "step_size": _positive_int,
    "gamma": lambda n, v, s: real(n, v, s, minimum=0.0),
    "milestones": lambda n, v, s: _milestones(v, s),
    "decay": lambda n, v, s: real(n, v, s, minimum=0.0),
    "decay_type": lambda n, v, s: choice(n, v, list(F.WSD_DECAYS), s),
    "total_steps": _positive_int,
    "min_lr": per_group_real,
    "base_lr": _optional(per_group_real),
    "max_lr": lambda n, v, s: (None if v is None and s == "one_cycle" else per_group_real(n, v, s)),
    "step_size_up": _positive_int,
    "step_size_down": _optional(_positive_int),
    "mode": lambda n, v, s: choice(n, v, _MODES[s], s),
    "pct_start": lambda n, v, s: real(n, v, s, minimum=0.0, maximum=1.0),
    "anneal_strategy": lambda n, v, s: choice(n, v, ["cos", "linear"], s),
    "div_factor": lambda n, v, s: real(n, v, s, minimum=0.0, open_min=True),
    "final_div_factor": lambda n, v, s: real(n, v, s, minimum=0.0, open_min=True),
    "three_phase": boolean,
    "power": lambda n, v, s: real(n, v, s, minimum=0.0),
    "stable_steps": lambda n, v, s: integer(n, v, s, minimum=0),
    "decay_steps": _positive_int,
    "factor": lambda n, v, s: real(n, v, s, minimum=0.0, maximum=1.0, open_max=True),
    "patience": lambda n, v, s: integer(n, v, s, minimum=0),
    "threshold": lambda n, v, s: real(n, v, s, minimum=0.0),
    "threshold_mode": lambda n, v, s: choice(n, v, ["rel", "abs"], s),
    "cooldown": lambda n, v, s: integer(n, v, s, minimum=0),
    "eps": lambda n, v, s: real(n, v, s, minimum=0.0),
}


def _cross_check(name: str, s: dict[str, Any], horizon: str | None) -> None:
    if horizon is not None and s["warmup_steps"] >= s[horizon]:
        raise invalid(
            "warmup_steps", s["warmup_steps"],
            f"warmup_steps < {horizon}={s[horizon]} (the schedule needs steps after the warmup)", name,
        )
    if name == "one_cycle":
        total = s["total_steps"] - s["warmup_steps"]
        pct = s["pct_start"]
        ends = [pct * total - 1, 2 * pct * total - 2] if s["three_phase"] else [pct * total - 1]
        ends = [0.0, *ends, total - 1]
        if any(b <= a for a, b in zip(ends, ends[1:])):
            raise invalid(
                "pct_start", pct,
                f"pct_start * {total} > 1 and every phase of the cycle over {total} steps to end "
                f"after the one before (phases end at steps {[round(e, 3) for e in ends[1:]]})", name,
            )


@dataclass(frozen=True)
class Schedule:
    """A named schedule with checked settings (plain values, as saved in state_dict)."""

    spec: ScheduleSpec
    settings: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def warmup_steps(self) -> int:
        return self.settings["warmup_steps"]

    def for_group(self, lr: float, index: int = 0, n_groups: int = 1) -> dict[str, Any]:
        """The settings of param group ``index`` (lr ``lr``): per-group lists picked,
        warmup arguments removed, the horizon shortened by the warmup; checks the
        settings that depend on the group's lr."""
        core = {k: v for k, v in self.settings.items() if k not in WARMUP}
        for key in PER_GROUP:
            if key in core:
                core[key] = pick_group(key, core[key], index, n_groups, self.name)
        if self.spec.horizon is not None:
            core[self.spec.horizon] -= self.warmup_steps
        where = f"lr={lr}" + (f" of param group {index}" if n_groups > 1 else "")
        if lr < 0:
            raise invalid("lr", lr, "a learning rate >= 0", self.name)
        if "min_lr" in core and core["min_lr"] > lr:
            raise invalid("min_lr", core["min_lr"], f"min_lr <= the {where}", self.name)
        if self.name == "cyclic":
            low = lr if core["base_lr"] is None else core["base_lr"]
            if core["max_lr"] < low:
                what = f"the {where}" if core["base_lr"] is None else f"base_lr={low}"
                raise invalid("max_lr", core["max_lr"], f"max_lr >= {what}", self.name)
        return core

    def lr_at(self, t: int, lr: float, core: Mapping[str, Any], current: float | None = None) -> float:
        """The lr at step ``t`` of a group with lr ``lr`` and settings ``core`` (from
        :meth:`for_group`); ``current``: the plateau rule's lr of the group."""
        w = self.warmup_steps
        fn = self.spec.fn
        if t < w:
            target = current if fn is None else fn(0, lr, **core)
            return F.warmup(t, target, warmup_steps=w, start_factor=self.settings["warmup_start_factor"])
        return current if fn is None else fn(t - w, lr, **core)


def resolve(name: str, kwargs: Mapping[str, Any]) -> Schedule:
    """Check ``kwargs`` against schedule ``name``; unknown or missing arguments
    raise :class:`ScheduleArgumentError`, invalid values ``ScheduleError``."""
    spec = get(name)
    unknown = sorted(set(kwargs) - set(spec.defaults))
    if unknown:
        hints = {u: difflib.get_close_matches(u, list(spec.defaults), n=1, cutoff=0.6) for u in unknown}
        hint = "".join(f"; {u!r}: did you mean {h[0]!r}?" for u, h in hints.items() if h)
        raise ScheduleArgumentError(
            f"unknown argument(s) {unknown} for schedule {spec.name!r}{hint} "
            f"(accepted: {', '.join(sorted(spec.defaults))})"
        )
    settings = {**spec.defaults, **kwargs}
    missing = [k for k, v in settings.items() if v is REQUIRED]
    if missing:
        raise ScheduleArgumentError(
            f"schedule {spec.name!r} needs the argument(s) {missing} "
            f"(accepted: {', '.join(sorted(spec.defaults))})"
        )
    settings = {k: _ARGS[k](k, v, spec.name) for k, v in settings.items()}
    _cross_check(spec.name, settings, spec.horizon)
    return Schedule(spec, settings)
