"""The search space of ``descentlab tune``: which strategies a study may try.

The default space, for a workload W (every key can be replaced from a YAML file,
``--space FILE.yaml``):

==============  =========================================================  =========================
key             values                                                     Optuna parameter
==============  =========================================================  =========================
optimizer       adam, adamw, momentum, nesterov, lion (any optimizer:      ``optimizer`` (categorical)
                module:Name or file.py:Name too)
lr              W's default lr for the optimizer × [1/30, 30], log-uniform  ``lr_factor`` (log float)
schedule        constant, cosine, wsd, warmup_cosine                       ``schedule`` (categorical)
warmup          [0, 0.1] of the run's steps, uniform (not for constant)    ``warmup`` (float)
weight_decay    [1e-6, 1e-1], log-uniform                                  ``weight_decay`` (log float)
batch_size      W's recipe batch × {1/2, 1, 2} (not when it is "full")     ``batch_size`` (categorical)
==============  =========================================================  =========================

Decisions:

* **lr relative to each optimizer's default.** The workloads' default lrs are
  calibrated per optimizer (:mod:`descentlab.workloads.recipes`: Lion's is a fifth
  of Adam's, momentum SGD's is another scale again), so one parameter, the factor
  over that default, means the same thing for every optimizer. TPE (Bergstra et al.
  2011) then models one lr dimension, fitted on every trial, instead of five
  conditional ones fitted on a fifth of the trials each, and the parameter
  importances give the lr one number. An optimizer that is not registered
  (``torch.optim:AdamW``, ``my_opt.py:MyOpt``) has no workload default: its factor
  is over its class's own default lr (an error where it has none: give the space
  an absolute ``lr: {low, high}``). The lr a trial trained with is ``lr_factor × default``
  (the trial's ``config``, ``best.yaml``). A YAML ``lr: {low, high}`` or a list
  searches absolute lrs instead (parameter ``lr``).
* **weight decay as one log range**, no "use decay" switch: at 1e-6 the decay is
  negligible, so "none" lies inside the range and the space keeps one dimension.
  A YAML list (``weight_decay: [0, 1e-4, 1e-2]``) includes an exact 0. The value is
  the optimizer's own (coupled L2 for adam and momentum, decoupled for adamw and
  lion), as ``train --weight-decay``. A class or factory whose constructor takes no
  ``weight_decay`` gets none sampled (its algorithm has no decay to tune; a fixed
  ``opt: {decoupled_decay: F}`` adds descentlab's decoupled one).
* **warmup as a fraction** of the run, so one range fits any budget:
  ``warmup_steps = round(fraction × total steps)``, and the schedule's other length
  settings (cosine's ``total_steps``, WSD's stable and decay phases) follow from the
  budget (:func:`descentlab.schedules.budget_defaults`) and are written out in full
  in the trial's configuration. ``constant`` builds no scheduler in descentlab, so
  a warmup would be ignored: it is not sampled there.
* Any schedule whose settings the budget fills in is accepted (``step``, ``multistep``,
  ``one_cycle``, ``polynomial``, ``plateau`` too); ``exponential`` (gamma),
  ``inverse_time`` (decay) and ``cyclic`` (max_lr) need settings of their own, given
  under ``fixed: {sched: {...}}``. Each is built once, at the shortest trial's length
  with the largest warmup, before the study starts.

YAML format (every key optional; ``fixed`` holds TrainConfig settings for every
trial)::

    optimizer: [adamw, lion]
    lr: {factor: 10}            # or {low: 1.0e-4, high: 1.0e-1}, or a list of lrs
    schedule: [cosine, wsd]
    warmup: {low: 0.0, high: 0.05}   # or a list of fractions
    weight_decay: {low: 1.0e-5, high: 1.0e-2}   # or a list, 0 allowed
    batch_size: [32, 64]
    fixed: {clip_norm: 1.0, opt: {betas: [0.9, 0.95]}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

DEFAULT_OPTIMIZERS = ("adam", "adamw", "momentum", "nesterov", "lion")
DEFAULT_SCHEDULES = ("constant", "cosine", "wsd", "warmup_cosine")
DEFAULT_LR_FACTOR = 30.0
DEFAULT_WARMUP = (0.0, 0.1)
DEFAULT_WEIGHT_DECAY = (1e-6, 1e-1)
KEYS = ("optimizer", "lr", "schedule", "warmup", "weight_decay", "batch_size", "fixed")
#: TrainConfig settings a space may hold fixed (the searched ones, the budget, seed and folders are tune's)
FIXED_KEYS = ("opt", "sched", "l1", "clip_norm", "early_stopping", "precision", "eval_every", "device")
#: schedules built without a scheduler (descentlab.experiment.build), so without warmup
NO_WARMUP = ("constant",)


@dataclass(frozen=True)
class Range:
    """A float range for ``trial.suggest_float(name, low, high, log=log)``."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice:
    """Values for ``trial.suggest_categorical``; a single value is fixed (nothing sampled)."""

    values: tuple

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"choices": list(self.values)}


@dataclass(frozen=True)
class SearchSpace:
    """A concrete space for one workload (its default lrs and recipe batch filled in)."""

    optimizers: Choice
    lr: Range | Choice  # a Range with relative=True is a factor over each optimizer's default
    lr_relative: bool
    schedules: Choice
    warmup: Range | Choice
    weight_decay: Range | Choice
    batch_size: Choice | None  # None: the recipe's batch
    fixed: dict[str, Any] = field(default_factory=dict)
    base_lr: dict[str, float] = field(default_factory=dict)  # each optimizer's default lr on the workload

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample one strategy: optimizer, lr, schedule, warmup (fraction or None), weight_decay, batch_size."""
        optimizer = self.optimizers.suggest(trial, "optimizer")
        if self.lr_relative:
            lr = float(f"{self.lr.suggest(trial, 'lr_factor') * self.base_lr[optimizer]:.4g}")
        else:
            lr = self.lr.suggest(trial, "lr")
        schedule = self.schedules.suggest(trial, "schedule")
        warmup = self.warmup.suggest(trial, "warmup") if takes_warmup(schedule) else None
        return {
            "optimizer": optimizer,
            "lr": lr,
            "schedule": schedule,
            "warmup": warmup,
            "weight_decay": self.weight_decay.suggest(trial, "weight_decay") if takes_weight_decay(optimizer) else None,
            "batch_size": self.batch_size.suggest(trial, "batch_size") if self.batch_size else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (recorded in the study: a rerun must search the same space)."""
        lr = self.lr.to_dict()
        if self.lr_relative:
            lr = {"factor_of_default": lr, "defaults": {o: self.base_lr[o] for o in self.optimizers.values}}
        return {
            "optimizer": list(self.optimizers.values),
            "lr": lr,
            "schedule": list(self.schedules.values),
            "warmup": self.warmup.to_dict(),
            "weight_decay": self.weight_decay.to_dict(),
            "batch_size": list(self.batch_size.values) if self.batch_size else "recipe",
            "fixed": self.fixed,
        }


# -- reading and checking a space ---------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range(key: str, value: dict, where: str, *, log: bool, low_min: float, high_max: float = math.inf) -> Range:
    unknown = sorted(set(value) - {"low", "high"})
    if unknown or not {"low", "high"} <= set(value):
        raise UsageError(f"invalid {key}={value!r} in {where}: expected a mapping with low and high (or a list)")
    low, high = value["low"], value["high"]
    for name, v in (("low", low), ("high", high)):
        if not _is_number(v) or v < low_min or (log and v <= 0) or v > high_max:
            bound = f"> {low_min:g}" if log else f">= {low_min:g}"
            top = f" and <= {high_max:g}" if math.isfinite(high_max) else ""
            raise UsageError(f"invalid {key} {name}={v!r} in {where}: expected a finite number {bound}{top}")
    if low >= high:
        raise UsageError(f"invalid {key} in {where}: low={low!r} >= high={high!r}; expected low < high")
    return Range(float(low), float(high), log)


def _numbers(key: str, value: list, where: str, *, low_min: float, high_max: float = math.inf,
             integer: bool = False) -> Choice:
    if not value:
        raise UsageError(f"invalid {key}=[] in {where}: expected at least one value")
    for v in value:
        ok = isinstance(v, int) and not isinstance(v, bool) if integer else _is_number(v)
        if not ok or v < low_min or v > high_max or (key == "lr" and v <= 0):
            kind = "an integer" if integer else "a finite number"
            top = f" and <= {high_max:g}" if math.isfinite(high_max) else ""
            raise UsageError(f"invalid {key} value {v!r} in {where}: expected {kind} >= {low_min:g}{top}")
    return Choice(tuple(dict.fromkeys(int(v) if integer else float(v) for v in value)))


def _names(key: str, value: Any, where: str, canonical) -> Choice:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UsageError(f"invalid {key}={value!r} in {where}: expected a list of names")
    out = []
    for v in value:
        try:
            out.append(canonical(v))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"invalid {key} {v!r} in {where}: {exc}") from None
    return Choice(tuple(dict.fromkeys(out)))


def build(wl: Any, data: dict[str, Any] | None = None, *, where: str = "the search space") -> SearchSpace:
    """The space for workload ``wl``: the default, with the keys of ``data`` (a YAML
    mapping) replacing it. Every value is checked; a bad one raises UsageError naming it
    (then :func:`check` checks it against the trials' budget)."""
    from .. import optim, schedules
    from ..experiment.config import TrainConfig, validate

    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError(f"invalid {where}: expected a mapping of {', '.join(KEYS)}, got {type(data).__name__}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {where} (expected: {', '.join(KEYS)})")

    from ..experiment.build import initial_lr

    optimizers = _names("optimizer", data.get("optimizer", list(DEFAULT_OPTIMIZERS)), where, optim.canonical)

    lr_value = data.get("lr", {"factor": DEFAULT_LR_FACTOR})
    if isinstance(lr_value, dict) and set(lr_value) == {"factor"}:
        factor = lr_value["factor"]
        if not _is_number(factor) or factor <= 1:
            raise UsageError(f"invalid lr factor={factor!r} in {where}: expected a finite number > 1")
        lr, relative = Range(1.0 / factor, float(factor), log=True), True
    elif isinstance(lr_value, dict):
        lr, relative = _range("lr", lr_value, where, log=True, low_min=0.0), False
    elif isinstance(lr_value, list):
        lr, relative = _numbers("lr", lr_value, where, low_min=0.0), False
    else:
        raise UsageError(f"invalid lr={lr_value!r} in {where}: expected {{factor: F}}, {{low: F, high: F}} or a list")

    base_lr = {}
    for name in optimizers.values if relative else ():
        try:
            base_lr[name] = initial_lr(wl, name)[0]
        except ValueError as exc:
            raise UsageError(f"invalid optimizer {name!r} in {where}: {exc}") from None

    schedule_names = _names("schedule", data.get("schedule", list(DEFAULT_SCHEDULES)), where, schedules.canonical)

    warmup_value = data.get("warmup", {"low": DEFAULT_WARMUP[0], "high": DEFAULT_WARMUP[1]})
    warmup = _dimension("warmup", warmup_value, where, log=False, low_min=0.0, high_max=0.5)
    wd_value = data.get("weight_decay", {"low": DEFAULT_WEIGHT_DECAY[0], "high": DEFAULT_WEIGHT_DECAY[1]})
    weight_decay = _dimension("weight_decay", wd_value, where, log=True, low_min=0.0)

    recipe_batch = wl.recipe.get("batch_size")
    if "batch_size" in data:
        value = data["batch_size"]
        if not isinstance(value, list):
            raise UsageError(f"invalid batch_size={value!r} in {where}: expected a list of integers")
        batch_size = _numbers("batch_size", value, where, low_min=1, integer=True)
    elif recipe_batch == "full" or not isinstance(recipe_batch, int):
        batch_size = None
    else:
        batch_size = Choice(tuple(dict.fromkeys((max(1, recipe_batch // 2), recipe_batch, 2 * recipe_batch))))

    fixed = data.get("fixed", {}) or {}
    if not isinstance(fixed, dict):
        raise UsageError(f"invalid fixed={fixed!r} in {where}: expected a mapping of train settings")
    for key in fixed:
        if key not in FIXED_KEYS:
            raise UsageError(f"invalid fixed key {key!r} in {where}: expected one of {', '.join(FIXED_KEYS)} "
                             "(optimizer, lr, schedule, weight_decay, batch_size are searched keys; the budget is "
                             "--steps/--epochs)")
    validate(TrainConfig(workload=wl.name, **fixed))
    space = SearchSpace(optimizers, lr, relative, schedule_names, warmup, weight_decay, batch_size, dict(fixed), base_lr)
    return space


def _dimension(key: str, value: Any, where: str, *, log: bool, low_min: float, high_max: float = math.inf):
    if isinstance(value, dict):
        return _range(key, value, where, log=log, low_min=low_min, high_max=high_max)
    if isinstance(value, list):
        return _numbers(key, value, where, low_min=low_min, high_max=high_max)
    raise UsageError(f"invalid {key}={value!r} in {where}: expected {{low: F, high: F}} or a list")


def check(space: SearchSpace, total_steps: int, where: str = "the search space") -> None:
    """Every optimizer takes the fixed hyperparameters; every schedule builds for a run of
    ``total_steps`` (the shortest trial) with the largest warmup: so no trial fails on its settings."""
    import torch

    from .. import optim, schedules

    for name in space.optimizers.values if space.fixed.get("opt") else ():  # names are checked already
        try:
            optim.create(name, [torch.zeros(1, requires_grad=True)], lr=space.base_lr.get(name, 1e-3),
                         **dict(space.fixed.get("opt", {})))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"invalid fixed opt in {where} for optimizer {name!r}: {exc}") from None
    top = space.warmup.high if isinstance(space.warmup, Range) else max(space.warmup.values)
    for name in space.schedules.values:
        if name in NO_WARMUP:
            continue
        kw = dict(space.fixed.get("sched", {}))
        if takes_warmup(name):
            kw["warmup_steps"] = round(top * total_steps)
        try:
            kw = schedules.budget_defaults(name, total_steps, kw)
            if schedules.is_registered(name):
                schedules.resolve(name, kw)
            else:  # built on a stand-in optimizer: its settings are checked as a run would build it
                schedules.create(name, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), **kw)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"invalid schedule {name!r} in {where} for a {total_steps}-step run: {exc}") from None


def takes_weight_decay(optimizer: str) -> bool:
    """Whether a weight decay is sampled for ``optimizer``: every registered one, and a
    class or factory whose constructor takes ``weight_decay`` (its own decay, whatever it
    means there). Not one without: descentlab would have to add a decay the algorithm
    does not have (``decoupled_decay`` is there to ask for that, as a fixed ``opt``)."""
    from .. import optim

    spec = optim.get(optimizer)
    return isinstance(spec, optim.OptimizerSpec) or spec.accepts("weight_decay")


def takes_warmup(schedule: str) -> bool:
    """Whether a warmup fraction is sampled for ``schedule``: every registered schedule
    but ``constant``; not a user's function or class, whose settings are its own."""
    from .. import schedules

    return schedule not in NO_WARMUP and schedules.is_registered(schedule)


def load(path: str | Path, wl: Any) -> SearchSpace:
    """The space of a YAML file (safe loader) for workload ``wl``."""
    from ..experiment.config import load_yaml_data

    if not Path(path).is_file():
        raise UsageError(f"cannot read search space file {str(path)!r}: no such file")
    data = load_yaml_data(path)
    return build(wl, data if data is not None else {}, where=f"search space {str(path)!r}")


def trial_config(choice: dict[str, Any], space: SearchSpace, *, workload: str, steps: int | None,
                 epochs: int | None, seed: int, data_dir: str | None, n_train: int,
                 recipe_batch: int | str) -> dict[str, Any]:
    """The TrainConfig settings of one sampled strategy (what ``best.yaml`` holds).

    Schedule length settings are written out in full from the budget, so the
    configuration trains the same schedule wherever it is run."""
    from .. import schedules
    from ..workloads.recipes import steps_per_epoch

    batch = choice["batch_size"] if choice["batch_size"] is not None else recipe_batch
    total = min(steps or math.inf, (epochs or math.inf) * steps_per_epoch(n_train, batch))
    sched = dict(space.fixed.get("sched", {}))
    if takes_warmup(choice["schedule"]):
        sched["warmup_steps"] = round(choice["warmup"] * total)
    if choice["schedule"] not in NO_WARMUP:
        sched = schedules.budget_defaults(choice["schedule"], total, sched)
    config = {
        "workload": workload,
        "optimizer": choice["optimizer"],
        "lr": choice["lr"],
        "schedule": choice["schedule"],
        "sched": sched,
        "weight_decay": choice["weight_decay"],
        "batch_size": batch,
        "seed": seed,
        **{k: v for k, v in space.fixed.items() if k != "sched"},
    }
    config["steps" if steps is not None else "epochs"] = steps if steps is not None else epochs
    if data_dir is not None:
        config["data_dir"] = data_dir
    return config
