"""The benchmark's runs on the engine's queue: every (workload, strategy, study, trial, seed) one run.

The same engine as ``compare`` (:mod:`descentlab.compare.execute`): the runs are the enqueued
trials of one Optuna study of kind ``benchmark`` (its settings: the suite with its targets and
budgets, the strategies, the ruleset, the trials' points), claimed one at a time by workers
here (``jobs``) or on other machines (``descentlab worker --storage URL``), each run
checkpointed so that a killed worker's run continues where it was, and recorded in the run
store of the same database. A run stops at its validation target (AlgoPerf: time to target
is all that is scored) or at its budget.

A run's seed is ``study × seeds + seed``: every study trains other initialisations and data
orders, so studies and seeds are independent draws for the bootstrap.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..experiment.strategy import Strategy
from ..engine import queue
from ..engine.liveness import Heartbeat
from ..engine.storage import GRACE_FACTOR, MAX_RETRY, open_storage, quiet_optuna
from ..engine.workers import WorkerError
from ..errors import UsageError
from ..store import RunStore
from ..train.callbacks import Callback
from .suites import Entry

KIND = "benchmark"
GROUP = "benchmark"
RULESETS = ("self", "external")
#: AlgoPerf's self-tuning ruleset: the defaults only, with 3× the external ruleset's budget
SELF_BUDGET = 3
#: evaluations per external budget: time to target is read at these steps
EVALS = 20
#: run seed = study × SEED_STRIDE + seed (seeds per study stay below it: --seeds caps at 10)
SEED_STRIDE = 1000


@dataclass(frozen=True)
class Plan:
    """What every worker needs (picklable; rebuilt from the study's settings by :func:`join`)."""

    entries: tuple[Entry, ...]  # targets and budgets resolved
    strategies: tuple[Strategy, ...]
    spaces: dict[str, dict[str, Any]]  # strategy label -> search space (external)
    points: dict[str, list[list[dict[str, Any]]]]  # label -> study -> trial -> point (external)
    ruleset: str
    trials: int
    studies: int
    seeds: int
    storage: str
    name: str
    heartbeat: int
    costs: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)  # label -> entry -> part -> s/step
    centres: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # label -> entry -> lr centre
    data_dir: str | None = None
    device: str = "auto"
    checkpoints: str = "."

    def settings(self) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in self.entries], "strategies": [s.to_dict() for s in self.strategies],
                "spaces": self.spaces, "points": self.points, "ruleset": self.ruleset, "trials": self.trials,
                "studies": self.studies, "seeds": self.seeds, "costs": self.costs, "centres": self.centres}

    @classmethod
    def from_settings(cls, saved: dict[str, Any], **machine: Any) -> Plan:
        strategies = tuple(Strategy(**{**d, "groups": tuple(d.get("groups") or ())}) for d in saved["strategies"])
        entries = tuple(Entry.from_dict(e) for e in saved["entries"])
        return cls(**{**saved, "entries": entries, "strategies": strategies}, **machine)

    def steps(self, budget: int) -> int:
        """A run's step budget: the part's budget, × :data:`SELF_BUDGET` under the self ruleset."""
        return budget * (SELF_BUDGET if self.ruleset == "self" else 1)

    def eval_every(self, part: Any) -> int:
        """Steps between a run's evaluations: the part's (the cadence its target was set at), else
        the budget / :data:`EVALS`."""
        return part.eval_every or max(1, part.budget_steps // EVALS)

    def entry(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)


def run_keys(plan: Plan) -> list[dict[str, Any]]:
    """Every run, cheapest first within each study and seed (workload by workload)."""
    keys = []
    for study in range(plan.studies):
        for seed in range(plan.seeds):
            for e in plan.entries:
                for part, _ in e.parts():
                    for index, s in enumerate(plan.strategies):
                        points = plan.points.get(s.label, [[{}]])[study] if plan.ruleset == "external" else [{}]
                        for trial, point in enumerate(points):
                            keys.append({"entry": e.name, "part": part, "strategy": s.label, "index": index,
                                         "study": study, "trial": trial, "seed": seed, "point": point})
    return keys


def run_name(key: dict[str, Any]) -> str:
    return f"{key['entry']}/{key['part']}/{key['strategy']}/study{key['study']}/trial{key['trial']}/seed{key['seed']}"


def _folder(key: dict[str, Any]) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_name(key).replace("/", "-"))


def run_seed(plan: Plan, key: dict[str, Any]) -> int:
    return key["study"] * SEED_STRIDE + key["seed"]


class StopAtTarget(Callback):
    """Stop training at the first evaluation that reaches the target (nothing after it is scored)."""

    def __init__(self, key: str, target: float, reached: Callable[[float, float], bool]):
        self.key, self.target, self.reached = key, target, reached

    def _hit(self, value: Any) -> bool:
        return isinstance(value, float) and value == value and self.reached(value, self.target)

    def on_fit_start(self, trainer: Any) -> None:  # resumed from a checkpoint written after the target
        if any(self._hit(row.get(self.key)) for row in trainer.history.rows):
            trainer.should_stop, trainer.stop_reason = True, "target"

    def on_validation_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if self._hit(logs.get(self.key)):
            trainer.should_stop, trainer.stop_reason = True, "target"


class Workloads:
    """Each part's Workload, built once per worker."""

    def __init__(self, plan: Plan):
        self.plan, self.cache = plan, {}

    def get(self, entry: str, part: str) -> Any:
        if (entry, part) not in self.cache:
            self.cache[(entry, part)] = self.plan.entry(entry).workload(part, self.plan.data_dir)
        return self.cache[(entry, part)]


def strategy_for(plan: Plan, wl: Any, key: dict[str, Any]) -> tuple[Strategy, float | None]:
    """The run's strategy (its trial's hyperparameters applied) and its lr (None: the default)."""
    from ..experiment.single import lr_and_source
    from .space import hparams

    strategy = plan.strategies[key["index"]]
    point = key.get("point") or {}
    if not point:
        return strategy, None
    centre = plan.centres.get(strategy.label, {}).get(key["entry"])
    lr, extra = hparams(point, centre if centre is not None else lr_and_source(strategy, wl)[0])
    if extra:
        strategy = dataclasses.replace(strategy, hparams={**strategy.hparams, **extra})
    return strategy, lr


def batch_size(entry: Entry, wl: Any) -> Any:
    return entry.batch_size if entry.batch_size is not None else wl.recipe["batch_size"]


def work(plan: Plan, send: Callable[[str, str], None]) -> None:
    """One worker: take runs from the queue until none is waiting or running."""
    from optuna.trial import TrialState

    from ..experiment.single import train_one, warm_up

    with quiet_optuna():
        storage = open_storage(plan.storage, plan.heartbeat, MAX_RETRY)
        study = queue.find(storage, plan.name)
        if study is None:
            raise UsageError(f"no benchmark {plan.name!r} in the storage")
        store = RunStore(plan.storage)
        parts, warmed = Workloads(plan), set()
        while True:
            what, trial = queue.claim(study, storage, plan.storage, GRACE_FACTOR * plan.heartbeat)
            if what == "done":
                return
            if what == "wait":
                time.sleep(min(1.0, plan.heartbeat))
                continue
            key = trial.user_attrs[queue.RUN]
            entry = plan.entry(key["entry"])
            part = entry.base if key["part"] == "base" else entry.variant
            folder = Path(plan.checkpoints) / "runs" / _folder(key)
            with Heartbeat(storage, trial._trial_id, plan.heartbeat):
                try:
                    wl = parts.get(key["entry"], key["part"])
                    strategy, lr = strategy_for(plan, wl, key)
                    steps, batch = plan.steps(part.budget_steps), batch_size(entry, wl)
                    if (key["entry"], key["part"]) not in warmed:  # one-time costs, before the first timed run
                        warm_up(wl, plan.strategies, steps=steps, batch_size=batch, device=plan.device,
                                log=lambda msg: None)
                        warmed.add((key["entry"], key["part"]))
                    resumed = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").glob("step-*.pt"))
                    send("start", json.dumps({**key, "resumed": resumed}))
                    summary, rows = train_one(
                        wl, strategy, run_seed(plan, key), steps=steps, batch_size=batch,
                        eval_every=plan.eval_every(part), target=part.target, lr=lr, device=plan.device,
                        callbacks=[StopAtTarget(f"val_{wl.metric}", part.target, wl.reached)],
                        checkpoint_dir=str(folder / "checkpoints"))
                    row = _row(plan, key, part, wl, summary, steps)
                    config = {**strategy.to_dict(), **{k: key[k] for k in ("entry", "part", "strategy", "study",
                                                                          "trial", "seed", "point")},
                              "run_seed": run_seed(plan, key), "workload": wl.name, "metric": wl.metric,
                              "metric_mode": wl.metric_mode, "target": part.target, "steps": steps,
                              "batch_size": batch, "ruleset": plan.ruleset}
                    store.record(run_name(key), config, rows, row, status=summary["status"], group=GROUP,
                                 study=plan.name)
                except UsageError:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded on the trial; the other runs go on
                    storage.set_trial_user_attr(trial._trial_id, "error", f"{type(exc).__name__}: {exc}"[:500])
                    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                    send("failed", json.dumps({**key, "error": f"{type(exc).__name__}: {exc}"}))
                    continue
            hit = row["steps_to_target"]
            storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE,
                                           values=[float(hit) if hit is not None else float("inf")])
            shutil.rmtree(folder, ignore_errors=True)
            send("done", json.dumps({**key, "status": row["status"], "steps_to_target": hit,
                                     "wall_seconds": row["wall_seconds"]}))


def _row(plan: Plan, key: dict[str, Any], part: Any, wl: Any, summary: dict[str, Any], steps: int) -> dict[str, Any]:
    """One row of times.csv."""
    from .space import label

    cost = plan.costs.get(key["strategy"], {}).get(key["entry"], {}).get(key["part"])
    hit = summary["steps_to_target"]
    return {"workload": key["entry"], "part": key["part"], "strategy": key["strategy"], "study": key["study"],
            "trial": key["trial"], "seed": key["seed"], "run_seed": run_seed(plan, key),
            "hparams": label(key.get("point") or {}) or "defaults", "lr": summary["lr"], "target": part.target,
            "metric": wl.metric, "budget_steps": steps, "status": summary["status"],
            "steps_to_target": hit, "seconds_to_target": summary["seconds_to_target"],
            "reference_seconds_to_target": hit * cost if hit is not None and cost is not None else None,
            "seconds_per_step": cost,
            "steps": summary["steps"], "train_seconds": summary["train_seconds"],
            "wall_seconds": summary["wall_seconds"], "best_metric": summary["best_metric"],
            "final_metric": summary["final_metric"]}


def _work_in_worker(plan: Plan, send: Callable[[str, str], None]) -> None:
    work(plan, send)


class Progress:
    """A line per finished run: how many are done, left, and an ETA from the finished runs."""

    def __init__(self, remaining: int, log: Callable[[str], None]):
        self.remaining, self.log = remaining, log
        self.done, self.begin = 0, time.monotonic()

    def __call__(self, kind: str, text: str) -> None:
        if kind not in ("done", "failed"):
            return
        key = json.loads(text)
        self.done += 1
        elapsed = time.monotonic() - self.begin
        eta = elapsed / self.done * max(0, self.remaining - self.done)
        what = ("failed: " + key["error"] if kind == "failed" else "diverged" if key["status"] == "diverged"
                else f"target at step {key['steps_to_target']}" if key["steps_to_target"] is not None
                else "target missed")
        self.log(f"[{self.done}/{self.remaining} this session, ETA {int(eta // 60)}m{int(eta % 60):02d}s] "
                 f"{key['entry']} {key['part']} {key['strategy']} study {key['study']} trial {key['trial']} "
                 f"seed {key['seed']}: {what}")


def execute(plan: Plan, jobs: int, *, log: Callable[[str], None] = print) -> None:
    """Run every waiting run of the benchmark: here (``jobs=1``) or in ``jobs`` worker processes."""
    with quiet_optuna():
        storage = open_storage(plan.storage, plan.heartbeat, MAX_RETRY)
    n = queue.counts(queue.find(storage, plan.name))
    progress = Progress(n["WAITING"] + n["RUNNING"], log)
    if jobs == 1:
        work(plan, progress)
        return
    queue.drain(_work_in_worker, plan, jobs, storage, plan.name, log=log, on_message=progress,
                process_name="descentlab-benchmark")


def collect(plan: Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(times.csv rows in run order, the runs)``; a run without a result is a WorkerError naming it."""
    runs = {r["name"]: r for r in RunStore(plan.storage).runs(GROUP, study=plan.name)}
    rows, chosen, missing = [], [], []
    for key in run_keys(plan):
        run = runs.get(run_name(key))
        if run is None or run.get("summary") is None:
            missing.append(run_name(key))
        else:
            rows.append(run["summary"])
            chosen.append(run)
    if missing:
        with quiet_optuna():
            study = queue.find(open_storage(plan.storage, plan.heartbeat, MAX_RETRY), plan.name)
        errors = {run_name(t.user_attrs[queue.RUN]): t.user_attrs["error"] for t in study.get_trials(deepcopy=False)
                  if "error" in t.user_attrs and queue.RUN in t.user_attrs} if study is not None else {}
        why = "; ".join(f"{n}: {errors[n]}" for n in missing[:3] if n in errors)
        raise WorkerError(f"{len(missing)} run(s) have no result ({', '.join(missing[:3])})" + (f": {why}" if why else ""))
    return rows, chosen
