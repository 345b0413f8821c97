"""Suites: lists of workloads, each with a validation target, a step budget and a held-out variant.

A suite file (YAML, read with the safe loader; the built-in ``small`` and ``full`` are such
files in ``descentlab/benchmark/suites/``, written by ``benchmarks/benchmark_targets.py``)::

    name: my-suite                       # optional; default: the file's stem
    workloads:
      - workload: digits-mlp             # a built-in name, file.py:FUNC or module:FUNC
        name: digits                     # its label in the report (default: the workload)
        target: 0.95                     # validation metric level (or auto)
        budget_steps: 600                # optimizer steps (or auto, with target auto)
        eval_every: 20                   # optional: steps between evaluations, the cadence the target
                                         # was set at (default: budget_steps / 20)
        batch_size: 32                   # optional; default: the workload's recipe
        metric: loss                     # optional; the validation measure the targets are on
                                         # (default: the workload's metric)
        variant:                         # the held-out variant (optional in a user's suite)
          activation: tanh               # and/or data_seed: 1, or workload: other.py:make
          target: 0.93
          budget_steps: 600

``target: auto`` sets the target (and ``budget_steps: auto`` the budget) on the user's
workload by the procedure of :mod:`descentlab.benchmark.targets`, before the benchmark
runs. Every entry needs both a target and a budget: a missing one is an error naming the
workload, before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import variants

BUILTIN = ("small", "full", "families")
HERE = Path(__file__).parent / "suites"
ENTRY_KEYS = ("workload", "name", "target", "budget_steps", "eval_every", "batch_size", "metric", "variant")
#: what ``metric:`` may name besides the workload's own metric: the validation loss, continuous where
#: an accuracy on a few hundred examples moves in steps of one example
METRICS = ("loss",)
VARIANT_KEYS = ("target", "budget_steps", "eval_every", *variants.CHANGES)
AUTO = "auto"


@dataclass(frozen=True)
class Part:
    """One trained problem: a base workload or its variant."""

    workload: str  # a name or an absolute reference
    target: float | None  # None: auto, still to be set
    budget_steps: int | None  # None: auto
    changes: dict[str, Any] = field(default_factory=dict)  # the variant's changes; {} for a base workload
    eval_every: int | None = None  # steps between evaluations (None: budget / 20)

    def to_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "target": self.target, "budget_steps": self.budget_steps,
                "changes": dict(self.changes), "eval_every": self.eval_every}


@dataclass(frozen=True)
class Entry:
    name: str
    base: Part
    variant: Part | None
    batch_size: Any = None
    metric: str | None = None  # None: the workload's metric

    def parts(self) -> list[tuple[str, Part]]:
        return [("base", self.base)] + ([("variant", self.variant)] if self.variant is not None else [])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base.to_dict(),
                "variant": self.variant.to_dict() if self.variant else None, "batch_size": self.batch_size,
                "metric": self.metric}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        variant = Part(**d["variant"]) if d.get("variant") else None
        return cls(name=d["name"], base=Part(**d["base"]), variant=variant, batch_size=d.get("batch_size"),
                   metric=d.get("metric"))

    def workload(self, part: str, data_dir: str | None = None) -> Any:
        """The Workload that ``part`` ("base" or "variant") trains, its metric the entry's."""
        return build(self, part, data_dir)


@dataclass(frozen=True)
class Suite:
    name: str
    entries: tuple[Entry, ...]
    source: str = ""  # the file it was read from

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "entries": [e.to_dict() for e in self.entries]}


def _target(value: Any, where: str) -> float | None:
    if value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: invalid target {value!r}: expected a number or auto")
    return float(value)


def _budget(value: Any, where: str, auto_target: bool) -> int | None:
    if value == AUTO:
        if not auto_target:
            raise UsageError(f"{where}: budget_steps auto needs target auto (the procedure sets both)")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: invalid budget_steps {value!r}: expected an integer >= 1 or auto")
    return value


def _part(workload: str, data: dict[str, Any], where: str, changes: dict[str, Any]) -> Part:
    for key in ("target", "budget_steps"):
        if key not in data:
            raise UsageError(f"{where}: no {key} given (a number, or auto)")
    target = _target(data["target"], where)
    every = data.get("eval_every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise UsageError(f"{where}: invalid eval_every {every!r}: expected an integer >= 1")
    return Part(workload=workload, target=target, budget_steps=_budget(data["budget_steps"], where, target is None),
                changes=changes, eval_every=every)


def _reference(workload: Any, where: str, base: Path | None) -> str:
    from .. import workloads
    from ..imports import is_reference

    if not isinstance(workload, str) or not workload.strip():
        raise UsageError(f"{where}: invalid workload {workload!r}: expected a name or file.py:FUNC")
    if is_reference(workload):
        path, _, func = workload.rpartition(":")
        if base is not None and path.endswith(".py") and not Path(path).is_absolute():
            candidate = base / path  # a file beside the suite file
            if candidate.exists():
                workload = f"{candidate}:{func}"
        from ..workloads.user import absolute

        return absolute(workload)
    key = workload.strip().lower().replace("_", "-")
    if key not in workloads.available():
        try:
            workloads.registry.get(workload)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None
    return key


def entry(item: Any, index: int, base: Path | None = None, where: str | None = None) -> Entry:
    """One suite entry from its mapping (validated)."""
    where = where or f"suite workload {index + 1}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected a mapping with workload, target, budget_steps, got {item!r}")
    unknown = sorted(set(item) - set(ENTRY_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; expected {', '.join(ENTRY_KEYS)}")
    if "workload" not in item:
        raise UsageError(f"{where}: no workload given")
    ref = _reference(item["workload"], where, base)
    name = str(item.get("name") or (ref.rpartition(":")[2] if ":" in ref else ref))
    where = f"suite workload {name!r}"
    part = _part(ref, item, where, {})
    variant = None
    if item.get("variant") is not None:
        v = item["variant"]
        vwhere = f"{where}, variant"
        if not isinstance(v, dict):
            raise UsageError(f"{vwhere}: expected a mapping, got {v!r}")
        unknown = sorted(set(v) - set(VARIANT_KEYS))
        if unknown:
            raise UsageError(f"{vwhere}: unknown key(s) {unknown}; expected {', '.join(VARIANT_KEYS)}")
        changes = variants.check({k: v[k] for k in variants.CHANGES if k in v}, vwhere)
        if changes.get("workload"):
            changes["workload"] = _reference(changes["workload"], vwhere, base)
        variant = _part(ref, v, vwhere, changes)
    batch = item.get("batch_size")
    if batch is not None and batch != "full" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UsageError(f"{where}: invalid batch_size {batch!r}: expected an integer >= 1 or full")
    metric = item.get("metric")
    if metric is not None and metric not in METRICS:
        raise UsageError(f"{where}: invalid metric {metric!r}: expected {' or '.join(METRICS)} "
                         "(or leave it out for the workload's own metric)")
    return Entry(name=name, base=part, variant=variant, batch_size=batch, metric=metric)


def from_data(data: Any, name: str, source: str = "", base: Path | None = None) -> Suite:
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"name", "workloads"})
        if unknown or "workloads" not in data:
            raise UsageError(f"invalid suite {source or name!r}: expected 'workloads:' (and optionally 'name:'), "
                             f"got keys {sorted(data)}")
        name = str(data.get("name") or name)
        data = data["workloads"]
    if not isinstance(data, list) or not data:
        raise UsageError(f"invalid suite {source or name!r}: expected a non-empty list of workloads")
    entries = tuple(entry(item, i, base) for i, item in enumerate(data))
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise UsageError(f"suite {name!r}: workload {e.name!r} is listed twice; give each a distinct name")
        seen.add(e.name)
    return Suite(name=name, entries=entries, source=source)


def load(spec: str) -> Suite:
    """A built-in suite by name (``small``, ``full``, ``families``) or a suite file."""
    from ..experiment.config import load_yaml_data
    from ..names import unknown_name

    if spec in BUILTIN:
        path = HERE / f"{spec}.yaml"
        return from_data(load_yaml_data(path), spec, source=spec)
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UsageError(f"suite file {spec!r} does not exist")
        return from_data(load_yaml_data(path), path.stem, source=str(path.resolve()), base=path.resolve().parent)
    hint = str(unknown_name("suite", spec, list(BUILTIN))).split(" (available")[0]
    raise UsageError(f"{hint} (available: {', '.join(BUILTIN)}, or a suite file FILE.yaml)")


def from_workloads(text: str) -> Suite:
    """``--workloads a,b,file.py:make``: the built-in suites' targets and budgets for built-in
    names that have them, ``auto`` for the others (set by the procedure)."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UsageError(f"invalid --workloads {text!r}: expected a comma-separated list of workloads")
    known = {e.name: e for spec in BUILTIN if (HERE / f"{spec}.yaml").exists() for e in load(spec).entries}
    items = []
    for n in names:
        key = n.lower().replace("_", "-")
        if key in known:
            items.append(known[key].to_dict())
        else:
            items.append({"workload": n, "target": AUTO, "budget_steps": AUTO})
    entries = []
    for i, item in enumerate(items):
        entries.append(Entry.from_dict(item) if "base" in item else entry(item, i, where="--workloads"))
    return Suite(name="workloads", entries=tuple(entries), source=text)


def build(e: Entry, part: str, data_dir: str | None = None) -> Any:
    """The Workload of entry ``e``'s ``part``: the base workload (data seed 0) or its variant,
    measured on the entry's metric (``metric: loss``: the validation loss, lower is better)."""
    import dataclasses

    from .. import workloads

    p = e.base if part == "base" else e.variant
    if p is None:
        raise ValueError(f"suite workload {e.name!r} has no {part}")
    wl = (variants.build(e.base.workload, p.changes, data_dir=data_dir) if p.changes
          else workloads.load(p.workload, seed=0, data_dir=data_dir))
    if e.metric is not None and e.metric != wl.metric:
        wl = dataclasses.replace(wl, metric=e.metric, metric_fn=None, metric_mode=None, metric_range=None)
    return wl
