"""``descentlab.benchmark(...)``: strategies scored across a suite of workloads, as AlgoPerf scores them.

    >>> import descentlab
    >>> result = descentlab.benchmark()                       # the small suite, 7 classic optimizers
    >>> result.scores["adamw"], result.report

The ``descentlab benchmark`` command calls this and nothing else. Writes ``out/benchmark.json``,
``out/times.csv`` and ``out/report.html``; every run is kept in the storage (``out/runs.sqlite``
by default). Called again after an interruption, the same call continues the benchmark.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError

CLASSIC = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
TIMES = ("seconds", "steps")
PLAN = "descentlab:plan"  # the study's user attribute holding the resolved plan (targets set, trials drawn)
DEFAULT_TRIALS = 5
CSV_COLUMNS = ("workload", "part", "strategy", "study", "trial", "seed", "run_seed", "hparams", "lr", "target",
               "metric", "budget_steps", "status", "steps_to_target", "reference_seconds_to_target", "seconds_per_step",
               "seconds_to_target", "steps", "train_seconds", "wall_seconds", "best_metric", "final_metric")
#: --seeds auto: the seeds (self ruleset) or studies (external) of each round, until the leader separates
#: (or the estimate says that even the cap would not)
AUTO_ROUNDS = (3, 5, 7, 10)
SEEDS_CAP = AUTO_ROUNDS[-1]


@dataclass(frozen=True)
class BenchmarkResult:
    """What a benchmark wrote: ``scores`` (strategy -> score on the chosen time), ``times``
    (strategy -> workload -> seconds or None), ``steps``, ``score_ci``, ``report`` (report.html),
    ``out`` (the folder) and ``data`` (benchmark.json, all of it)."""

    scores: dict[str, float]
    times: dict[str, dict[str, float | None]]
    steps: dict[str, dict[str, float | None]]
    score_ci: dict[str, list[float]]
    report: Path
    out: Path
    data: dict[str, Any]


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"invalid {name}={value!r}: expected an integer >= 1")
    return value


def strategies_and_spaces(optimizers: Any, strategies: Any) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The strategies (as ``compare`` takes them) and each one's search space (``space:`` field)."""
    from ..experiment.strategy import coerce, from_mapping
    from ..experiment.config import load_yaml_data
    from . import space

    if optimizers is not None and strategies is not None:
        raise UsageError("give optimizers or strategies, not both")
    raw: dict[str, Any] = {}
    if isinstance(strategies, (str, os.PathLike)):
        data = load_yaml_data(strategies)
        if isinstance(data, dict) and set(data) == {"strategies"}:
            data = data["strategies"]
        if not isinstance(data, list) or not data:
            raise UsageError(f"invalid strategies file {str(strategies)!r}: expected a non-empty list of strategies")
        items = []
        for i, item in enumerate(data):
            if isinstance(item, dict) and "space" in item:
                item = dict(item)
                raw[i] = item.pop("space")
            items.append(item)
        out = [from_mapping(item, i, None) for i, item in enumerate(items)]
        coerce(out)  # distinct labels
    else:
        given = strategies if strategies is not None else optimizers if optimizers is not None else ",".join(CLASSIC)
        if isinstance(given, (list, tuple)):
            given = [dict(g) if isinstance(g, dict) else g for g in given]
            for i, g in enumerate(given):
                if isinstance(g, dict) and "space" in g:
                    raw[i] = g.pop("space")
        out = coerce(given)
    spaces = {s.label: space.check(raw.get(i), f"strategy {s.label!r}") for i, s in enumerate(out)}
    return out, spaces


def _suite(suite: Any, workloads: Any) -> Any:
    from . import suites

    if suite is not None and workloads is not None:
        raise UsageError("give suite or workloads, not both")
    if workloads is not None:
        text = workloads if isinstance(workloads, str) else ",".join(workloads)
        return suites.from_workloads(text)
    return suites.load(str(suite) if suite is not None else "small")


def _resolve_targets(suite: Any, data_dir: str | None, log: Callable[[str], None]) -> tuple[tuple[Any, ...], dict]:
    """The suite's entries with every auto target and budget set (:mod:`.targets`), and the figures."""
    from . import targets

    figures: dict[str, Any] = {}
    entries = []
    for e in suite.entries:
        parts = {}
        for part_name, part in e.parts():
            if part.target is not None and part.budget_steps is not None:
                parts[part_name] = part
                continue
            wl = e.workload(part_name, data_dir)
            log(f"setting the target and budget of {e.name} ({part_name}) from tuned baselines (target: auto)")
            got = targets.procedure(wl, batch_size=e.batch_size, search_steps=part.budget_steps, log=log)
            figures[f"{e.name}/{part_name}"] = got
            parts[part_name] = replace(part, target=got["target"], budget_steps=got["budget_steps"],
                                       eval_every=got["eval_every"])
        entries.append(replace(e, base=parts["base"], variant=parts.get("variant")))
    return tuple(entries), figures


def _check(entries: Sequence[Any], strategies: Sequence[Any], data_dir: str | None) -> dict[str, dict[str, Any]]:
    """Every part loads, its target lies in its metric's range, every strategy builds on it;
    returns workload -> its description for benchmark.json."""
    from ..experiment.single import validate
    from . import variants

    described = {}
    for e in entries:
        info: dict[str, Any] = {}
        for part_name, part in e.parts():
            try:
                wl = e.workload(part_name, data_dir)
                wl.check_target(part.target)
            except ValueError as exc:
                raise UsageError(f"suite workload {e.name!r} ({part_name}): {exc}") from None
            validate(wl, strategies, part.budget_steps)
            if part_name == "base":
                info = {"target": part.target, "metric": wl.metric, "mode": wl.metric_mode,
                        "budget_steps": part.budget_steps, "workload": part.workload, "variant": None}
            else:
                info["variant"] = {"changes": variants.describe(part.changes), "target": part.target,
                                   "budget_steps": part.budget_steps}
        described[e.name] = info
    return described


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from ..report.table import write_csv as write

    write(path, rows, CSV_COLUMNS)


def _finite(value: Any) -> Any:
    """JSON has no ∞ or NaN: such a number is written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=1, allow_nan=False))
    os.replace(tmp, path)


def benchmark(
    suite: str | None = None,
    strategies: Any = None,
    *,
    workloads: str | Sequence[str] | None = None,
    optimizers: str | Sequence[str] | None = None,
    ruleset: str = "self",
    trials: int | None = None,
    studies: int = 1,
    seeds: int | str = "auto",
    time: str = "seconds",
    jobs: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    baseline: str | None = None,
    overwrite: bool = False,
    data_dir: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> BenchmarkResult:
    """Run ``strategies`` (or ``optimizers``; default the 7 classic ones) on every workload of
    ``suite`` (``"small"`` by default, ``"full"``, or a suite file) or of ``workloads``, under
    ``ruleset`` ``"self"`` (defaults only, 3× the budget) or ``"external"`` (``trials``
    quasi-random points of each strategy's search space per workload and study), ``studies``
    times with ``seeds`` seeds each (``"auto"``, the default: 3, then more seeds — studies under the
    external ruleset — until the leader's interval separates from the next strategy's, at most
    :data:`SEEDS_CAP`); score on ``time`` (``"seconds"``: reference time, or ``"steps"``).
    ``jobs``: runs at once (default one per core); ``storage``/``name``: the database and the
    benchmark's name in it (``descentlab worker`` joins it). Bad input raises UsageError
    before anything runs."""
    from ..engine.storage import check_url, heartbeat_interval, open_storage, quiet_optuna
    from ..engine.workers import cores
    from ..experiment.lock import hold
    from . import execute as ex
    from . import space

    log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    if ruleset not in ex.RULESETS:
        raise UsageError(f"invalid ruleset {ruleset!r}: expected one of {', '.join(ex.RULESETS)}")
    if time not in TIMES:
        raise UsageError(f"invalid time {time!r}: expected one of {', '.join(TIMES)}")
    if trials is None:
        trials = DEFAULT_TRIALS if ruleset == "external" else 1
    _count("trials", trials)
    _count("studies", studies)
    auto = seeds == "auto"
    if not auto:
        _count("seeds", seeds)
        if seeds > SEEDS_CAP:
            raise UsageError(f"invalid seeds={seeds}: expected at most {SEEDS_CAP} (or auto)")
    elif ruleset == "external" and studies != 1:
        raise UsageError(f"invalid studies={studies} with seeds=auto: under the external ruleset --seeds auto "
                         "chooses the studies itself (one seed each); give --seeds N to set them")
    if auto:  # round 1
        seeds, studies = (AUTO_ROUNDS[0], 1) if ruleset == "self" else (1, AUTO_ROUNDS[0])
    if jobs is not None:
        _count("jobs", jobs)
    if ruleset == "self" and trials != 1:
        raise UsageError(f"invalid trials={trials}: the self ruleset trains each strategy's defaults once per "
                         "study and seed; trials are for --ruleset external")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise UsageError(f"invalid benchmark name {name!r}: expected a non-empty string")
    if storage is not None:
        check_url(storage, jobs or 2)
    the_suite = _suite(suite, workloads)
    strats, spaces = strategies_and_spaces(optimizers, strategies)
    labels = [s.label for s in strats]
    baseline = baseline or ("adamw" if "adamw" in labels else labels[0])
    if baseline not in labels:
        raise UsageError(f"invalid baseline {baseline!r}: expected one of the strategies ({', '.join(labels)})")
    from ..imports import in_process_only

    objects = [s.label for s in strats if in_process_only(s.optimizer) or in_process_only(s.schedule)]
    if objects:
        raise UsageError(f"strategy {objects[0]!r} holds a Python object that the benchmark's worker processes "
                         "cannot import: give its optimizer and schedule as package.module:Name or file.py:Name")
    jobs = jobs or cores()
    name = name or f"benchmark-{the_suite.name}-{ruleset}"
    out = Path(out if out is not None else f"runs/benchmark-{the_suite.name}-{ruleset}").resolve()
    url = storage or f"sqlite:///{out / 'runs.sqlite'}"
    heartbeat = heartbeat_interval()
    request = {"suite": the_suite.to_dict(), "strategies": [s.to_dict() for s in strats], "spaces": spaces,
               "ruleset": ruleset, "trials": trials, "studies": "auto" if auto and ruleset == "external" else studies,
               "seeds": "auto" if auto else seeds}
    start = _now()
    with quiet_optuna():
        # the benchmark of that name, if it exists: the same request continues it (its targets and
        # trials as saved), another is refused; both before anything is written
        saved = None
        if storage is not None or (out / "runs.sqlite").exists():
            saved = _saved_plan(open_storage(url, heartbeat), url, name, request, overwrite)
        if saved is None:  # auto targets set, every part checked, the trials drawn: before anything is written
            entries, figures = _resolve_targets(the_suite, data_dir, log)
            workloads_info = _check(entries, strats, data_dir)
            from .calibrate import calibrate

            measured = calibrate(entries, strats, ruleset=ruleset, baseline=baseline, data_dir=data_dir,
                                 device=device, log=log)
            points = ({s.label: [space.trials(spaces[s.label], trials, st) for st in range(studies)]
                       for s in strats} if ruleset == "external" else {})
            plan = ex.Plan(entries=entries, strategies=tuple(strats), spaces=spaces, points=points,
                           ruleset=ruleset, trials=trials, studies=studies, seeds=seeds, storage=url, name=name,
                           heartbeat=heartbeat, costs=measured["costs"], centres=measured["centres"],
                           data_dir=data_dir, device=device, checkpoints=str(out))
            extra = {"figures": figures, "workloads": workloads_info, "calibration": measured["figures"],
                     "auto": auto, "rounds": []}
        else:
            plan = ex.Plan.from_settings(saved["plan"], storage=url, name=name, heartbeat=heartbeat,
                                         data_dir=data_dir, device=device, checkpoints=str(out))
            extra = saved["extra"]
        with hold(out):
            if overwrite:
                _forget(url, name, out, heartbeat)
            for stale in ("benchmark.json", "times.csv", "report.html"):
                (out / stale).unlink(missing_ok=True)
            out.mkdir(parents=True, exist_ok=True)
            from ..store import RunStore

            RunStore(url)
            db = open_storage(url, heartbeat)
            while True:
                study, _ = ex.queue.open_queue(db, url, name, kind=ex.KIND, settings=request, runs=ex.run_keys(plan),
                                               direction="minimize",
                                               attrs={PLAN: {"plan": plan.settings(), "extra": extra}})
                study.set_user_attr(PLAN, {"plan": plan.settings(), "extra": extra})
                n = ex.queue.counts(study)
                total = len(ex.run_keys(plan))
                log(f"benchmark {name}: {len(strats)} strategies × {len(plan.entries)} workloads (+ held-out "
                    f"variants), ruleset {ruleset}" + (f" ({trials} trials × {plan.studies} studies)"
                                                       if ruleset == "external" else f" ({SELF_NOTE})")
                    + f", {plan.seeds} seed(s){' (auto)' if auto else ''}: {total} runs, {jobs} at once"
                    + (f"; {n['COMPLETE']} already done" if n["COMPLETE"] else ""))
                ex.execute(plan, jobs, log=log)
                rows, runs = ex.collect(plan)
                grown = _next_round(plan, rows, extra, time=time, baseline=baseline, log=log) if auto else None
                if grown is None:
                    break
                plan = grown
            write_csv(out / "times.csv", rows)
            data = _document(plan, rows, runs, extra, time=time, baseline=baseline, suite=the_suite,
                             storage=url, wall=_now() - start)
            write_json(out / "benchmark.json", data)
            import contextlib

            with contextlib.suppress(OSError):
                (out / "runs").rmdir()
            from ..report.benchmark import render

            report = render(out)
            log(data["verdict"]["text"])
    return BenchmarkResult(scores=data["scores"], times=data["times"], steps=data["steps"], score_ci=data["score_ci"],
                           report=report, out=out, data=data)


SELF_NOTE = f"defaults, {3}× the budget"


def _replicates(plan: Any) -> int:
    return plan.seeds if plan.ruleset == "self" else plan.studies


def _next_round(plan: Any, rows: list[dict[str, Any]], extra: dict[str, Any], *, time: str, baseline: str,
                log: Callable[[str], None]) -> Any:
    """``--seeds auto``: the plan of the next round (more seeds, or studies under the external ruleset),
    or None when the leader's interval separates from the next strategy's, when the cap is reached,
    or when even the cap would not separate them at the observed difference (:func:`results.separation`);
    the next round is the first of :data:`AUTO_ROUNDS` at or past the estimate."""
    import dataclasses

    from . import results, space

    labels = [s.label for s in plan.strategies]
    summary = results.summarize(rows, strategies=labels, workloads=[e.name for e in plan.entries],
                                ruleset=plan.ruleset, time=time, baseline=baseline, trials=plan.trials)
    sep = results.separation(summary["scores"], summary["score_ci"], _replicates(plan))
    n = _replicates(plan)
    extra["rounds"].append({"replicates": n, "leader": sep["leader"], "next": sep["next"],
                            "separated": sep["separated"]})
    later = [r for r in AUTO_ROUNDS if r > n]
    what = "seeds" if plan.ruleset == "self" else "studies"
    if sep["separated"] or not later:
        return None
    if sep["needed"] is None or sep["needed"] > SEEDS_CAP:  # the cap would not separate them: stop here
        extra["rounds"][-1]["stopped"] = (f"{sep['leader']} and {sep['next']} score alike" if sep["needed"] is None
                                          else f"about {sep['needed']} {what} would separate them, over the cap")
        log(f"--seeds auto: {sep['leader']}'s interval overlaps {sep['next']}'s after {n} {what}, and "
            f"{extra['rounds'][-1]['stopped'].split(', over')[0]}: more {what}, up to {SEEDS_CAP}, would not "
            "separate them at the observed difference")
        return None
    later = [r for r in later if r >= sep["needed"]] or later[-1:]
    log(f"--seeds auto: {sep['leader']}'s interval overlaps {sep['next']}'s after {n} {what}; about "
        f"{sep['needed']} would separate them: {later[0]} {what}")
    if plan.ruleset == "self":
        return dataclasses.replace(plan, seeds=later[0])
    spaces = {s.label: plan.spaces[s.label] for s in plan.strategies}
    points = {label: list(p) + [space.trials(spaces[label], plan.trials, st) for st in range(len(p), later[0])]
              for label, p in plan.points.items()}
    return dataclasses.replace(plan, studies=later[0], points=points)


def _now() -> float:
    import time as _time

    return _time.perf_counter()


def _saved_plan(db: Any, url: str, name: str, request: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The saved plan of benchmark ``name`` when it exists with the same request; another is a UsageError."""
    from ..engine import queue

    study = queue.find(db, name)
    if study is None or overwrite:
        return None
    queue.check_same(study, url, name, "benchmark", request)
    return study.user_attrs.get(PLAN)


def _forget(url: str, name: str, out: Path, heartbeat: int) -> None:
    import shutil

    import optuna

    from ..engine import queue
    from ..engine.storage import open_storage
    from ..store import RunStore
    from .execute import GROUP

    db = open_storage(url, heartbeat)
    if queue.find(db, name) is not None:
        optuna.delete_study(study_name=name, storage=db)
    RunStore(url).delete(GROUP, name)
    shutil.rmtree(out / "runs", ignore_errors=True)


def _curves(plan: Any, runs: Sequence[dict[str, Any]], data: dict[str, Any]) -> dict[str, Any]:
    """workload -> strategy -> the validation curve of its best run on the base workload (study 0)."""
    from ..store import RunStore

    store = RunStore(plan.storage)
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        cfg, summary = run["config"], run["summary"]
        if cfg["part"] != "base" or cfg["study"] != 0 or cfg["seed"] != 0:
            continue
        k = (cfg["entry"], cfg["strategy"])
        t = summary.get("steps_to_target")
        rank = (0, t) if t is not None else (1, -(summary.get("best_metric") or 0) if cfg["metric_mode"] == "max"
                                                else (summary.get("best_metric") or math.inf))
        if k not in best or rank < best[k]["rank"]:
            best[k] = {"rank": rank, "id": run["id"], "metric": cfg["metric"]}
    out: dict[str, dict[str, Any]] = {}
    for (w, s), b in best.items():
        steps, values, _ = store.metric(b["id"], f"val_{b['metric']}")
        out.setdefault(w, {})[s] = {"steps": steps, "values": [v if v is not None and math.isfinite(v) else None
                                                              for v in values]}
    return out


def _document(plan: Any, rows: list[dict[str, Any]], runs: list[dict[str, Any]], extra: dict[str, Any], *,
              time: str, baseline: str, suite: Any, storage: str, wall: float) -> dict[str, Any]:
    from ..engine.storage import mask
    from . import execute as ex
    from . import results
    from .score import TAU_MAX

    labels = [s.label for s in plan.strategies]
    names = [e.name for e in plan.entries]
    summary = results.summarize(rows, strategies=labels, workloads=names, ruleset=plan.ruleset, time=time,
                                baseline=baseline, trials=plan.trials, replicates=_replicates(plan))
    from . import space

    spaces = ({s: {w: space.resolved(plan.spaces[s], plan.centres.get(s, {}).get(w)) for w in names}
               for s in labels} if plan.ruleset == "external" else {})
    workloads_info = {w: {**extra["workloads"][w]} for w in names}
    for w in names:
        workloads_info[w]["run_budget_steps"] = plan.steps(workloads_info[w]["budget_steps"])
    return {
        "ruleset": plan.ruleset, "time": time, "tau_max": TAU_MAX,
        "suite": suite.name, "name": plan.name, "storage": mask(storage),
        "strategies": labels,
        "optimizers": {s.label: s.optimizer for s in plan.strategies},
        "spaces": spaces, "space_rule": plan.spaces if plan.ruleset == "external" else {},
        "lr_centres": plan.centres,
        "seconds_per_step": plan.costs,
        "trials": plan.trials, "studies": plan.studies, "seeds": plan.seeds,
        "seeds_auto": {"auto": bool(extra.get("auto")), "rounds": extra.get("rounds", []),
                       "cap": SEEDS_CAP, "what": "seeds" if plan.ruleset == "self" else "studies"},
        "calibration": extra.get("calibration", {}),
        "self_budget": ex.SELF_BUDGET, "evaluations_per_budget": ex.EVALS,
        "workloads": workloads_info,
        **summary,
        "curves": _curves(plan, runs, summary),
        "target_setting": extra.get("figures", {}),
        "runs": len(rows),
        "wall_seconds": wall,
        "train_seconds": sum(r.get("train_seconds") or 0.0 for r in rows),
    }
