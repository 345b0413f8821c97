"""A strategy: an optimizer with its settings, optionally a schedule, regularization and clipping.

From the command line (``--optimizers adam,sgd``: one strategy per name with
the workload's default lr) or from a YAML file (``--strategies FILE.yaml``)::

    strategies:
      - name: adam-onecycle          # label in the report (default: the optimizer)
        optimizer: adam
        lr: 0.01                     # default: the workload's lr for this optimizer
        opt: {betas: [0.9, 0.99]}    # more hyperparameters
        schedule: one_cycle          # default: --schedule, or none
        sched: {pct_start: 0.25}
        weight_decay: 0.01
        l1: 0.0
        clip_norm: 1.0
        groups:                      # param groups by name or module type (optim.param_groups)
          - {modules: [Embedding], names: ["lm_head.*"], use_muon: false}
      - name: adamw-diloco
        optimizer: adamw             # the inner optimizer
        diloco: {sync_every: 20, outer_lr: 0.7, outer_momentum: 0.9}   # DiLoCo around it

Each comparison run is one process, so ``diloco`` there is DiLoCo with one
worker: the outer Nesterov step over every H inner steps (what it does to the
optimization); what it saves in communication is measured with ``train
--nproc N --strategy diloco`` (docs/distributed.md).

A top-level list (without ``strategies:``) is accepted too.

``optimizer:`` is any optimizer (:mod:`descentlab.optim.reference`): a
registered name, ``package.module:Name`` (``torch.optim:AdamW``) or
``path/to/file.py:Name``, and in Python the class or factory itself; its lr
defaults to the workload's for a registered name, else to the class's own
default (marked "the class default, untuned"). ``schedule:`` likewise takes
``file.py:fn`` / ``module:fn`` with ``fn(step, total_steps) -> multiplier`` or
an ``LRScheduler`` class, its arguments in ``sched:``. A relative file path
is read from the folder the command runs in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import optim, schedules
from ..errors import UsageError
from .config import load_yaml_data
from ..imports import short

KEYS = ("name", "optimizer", "lr", "opt", "schedule", "sched", "weight_decay", "l1", "clip_norm", "groups", "diloco")
DILOCO = {"sync_every": 20, "outer_lr": 0.7, "outer_momentum": 0.9}
GROUP_SELECTORS = ("names", "modules", "ndim")


@dataclass(frozen=True)
class Strategy:
    label: str
    optimizer: str
    lr: float | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    schedule_kwargs: dict[str, Any] = field(default_factory=dict)
    clip_norm: float | None = None
    groups: tuple[dict[str, Any], ...] = ()  # rules for optim.param_groups (names, module names, ndim)
    diloco: dict[str, Any] | None = None  # DiLoCo around the optimizer: sync_every, outer_lr, outer_momentum

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_names(text: str, schedule: str | None = None, schedule_kwargs: dict[str, Any] | None = None) -> list[Strategy]:
    """``"adam,sgd"`` -> strategies. Every name is checked before any is used,
    and an unknown name is reported by itself (with close matches)."""
    if schedule is not None:
        try:
            schedule = schedules.canonical(schedule)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UsageError(f"invalid --optimizers {text!r}: expected a comma-separated list of optimizer names")
    out = []
    for name in names:
        try:
            canonical = optim.canonical(name)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"strategy {name!r}: {exc}") from None
        out.append(Strategy(label=short(canonical), optimizer=canonical, schedule=schedule,
                            schedule_kwargs=dict(schedule_kwargs or {}) if schedule else {}))
    return _unique(out)


def _number(where: str, key: str, value: Any, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: invalid {key}={value!r}: expected a number")
    return float(value)


def from_mapping(item: Any, index: int, default_schedule: str | None,
                 default_kwargs: dict[str, Any] | None = None) -> Strategy:
    where = f"strategy {index + 1}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected a mapping of settings, got {item!r}")
    unknown = sorted(set(item) - set(KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; expected {', '.join(KEYS)}")
    if "optimizer" not in item:
        raise UsageError(f"{where}: no optimizer given")
    try:
        name = optim.canonical(item["optimizer"])
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    where = f"strategy {item.get('name', short(name))!r}"
    hparams = dict(item.get("opt") or {})
    if not isinstance(hparams, dict):
        raise UsageError(f"{where}: invalid opt={item['opt']!r}: expected a mapping")
    for key in ("weight_decay", "l1"):
        if item.get(key) is not None:
            hparams[key] = _number(where, key, item[key])
    schedule = item.get("schedule", default_schedule)
    if schedule is not None:
        try:
            schedule = schedules.canonical(schedule)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{where}: {exc}") from None
    sched = item.get("sched") or {}
    if not isinstance(sched, dict):
        raise UsageError(f"{where}: invalid sched={sched!r}: expected a mapping")
    if "schedule" not in item and schedule is not None:  # the default schedule, with the default settings
        sched = {**(default_kwargs or {}), **sched}
    groups = item.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise UsageError(f"{where}: invalid groups={groups!r}: expected a list of rules like "
                         "{modules: [Embedding], names: ['head.*'], lr: 0.01}")
    for rule in groups:
        if not set(rule) & set(GROUP_SELECTORS):
            raise UsageError(f"{where}: group rule {rule!r} selects nothing: give {', '.join(GROUP_SELECTORS)}")
        bad = [m for m in ([rule["modules"]] if isinstance(rule.get("modules"), str) else rule.get("modules", []))
               if not isinstance(m, str)]
        if bad:
            raise UsageError(f"{where}: group modules must be class names such as Embedding, got {bad!r}")
    diloco = item.get("diloco")
    if diloco is not None:
        if not isinstance(diloco, dict) or set(diloco) - set(DILOCO):
            raise UsageError(f"{where}: invalid diloco={diloco!r}: expected a mapping of {', '.join(DILOCO)}")
        diloco = {**DILOCO, **diloco}
        from ..distributed.diloco import _check

        try:
            _check(diloco["sync_every"], diloco["outer_lr"], diloco["outer_momentum"], True)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{where}: {exc}") from None
    return Strategy(
        label=str(item.get("name", short(name))),
        optimizer=name,
        lr=_number(where, "lr", item.get("lr")),
        hparams=hparams,
        schedule=schedule,
        schedule_kwargs=dict(sched),
        clip_norm=_number(where, "clip_norm", item.get("clip_norm")),
        groups=tuple(dict(g) for g in groups),
        diloco=diloco,
    )


def from_file(path: str | Path, default_schedule: str | None = None,
              default_kwargs: dict[str, Any] | None = None) -> list[Strategy]:
    data = load_yaml_data(path)
    if isinstance(data, dict):
        if set(data) != {"strategies"}:
            raise UsageError(f"invalid strategies file {str(path)!r}: expected a list under 'strategies:'")
        data = data["strategies"]
    if not isinstance(data, list) or not data:
        raise UsageError(f"invalid strategies file {str(path)!r}: expected a non-empty list of strategies")
    return _unique([from_mapping(item, i, default_schedule, default_kwargs) for i, item in enumerate(data)])


def coerce(strategies: Any, schedule: str | None = None, schedule_kwargs: dict[str, Any] | None = None) -> list[Strategy]:
    """Strategies from what the Python API takes: Strategy objects, optimizer
    names, strategy dicts (as in the strategies file), or one comma-separated
    string. ``schedule`` and ``schedule_kwargs`` apply where a name or dict
    sets no schedule of its own."""
    if isinstance(strategies, str):
        return from_names(strategies, schedule, schedule_kwargs)
    if isinstance(strategies, (Strategy, dict)):
        strategies = [strategies]
    try:
        items = list(strategies)
    except TypeError:
        raise UsageError(f"strategies must be a list of optimizer names, strategy dicts or Strategy objects, "
                         f"got {strategies!r}") from None
    out: list[Strategy] = []
    for i, item in enumerate(items):
        if isinstance(item, Strategy):
            out.append(item)
        elif isinstance(item, str):
            out.extend(from_names(item, schedule, schedule_kwargs))
        else:
            out.append(from_mapping(item, i, schedule, schedule_kwargs))
    return _unique(out)


def _unique(strategies: list[Strategy]) -> list[Strategy]:
    seen: set[str] = set()
    for s in strategies:
        if s.label in seen:
            raise UsageError(f"strategy {s.label!r} is listed twice; give each a distinct name")
        seen.add(s.label)
    return strategies
