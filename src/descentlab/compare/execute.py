"""Running a comparison's runs: each (strategy, seed) an enqueued trial of an Optuna study.

:func:`prepare_queue` creates the study with every run enqueued (or continues the one of
that name with the same settings); :func:`work` is one worker: it pays the one-time
costs (untimed), then takes runs from the queue (:func:`descentlab.engine.queue.claim`)
until none is left, training each with checkpoints under ``CHECKPOINTS/<run>/`` so that
an interrupted run continues from its newest one, recording it in the run store in the
same database and telling its trial COMPLETE. ``jobs=1`` runs the worker in this process,
``jobs=N`` in N processes of one torch thread each (:mod:`descentlab.engine.workers`);
``descentlab worker --storage URL`` runs more on other machines (:func:`join`).

Each run's numbers depend only on its strategy, seed and settings (the same code with one
thread whether it runs here, in a worker or after a resume), so ``--jobs N`` gives the
metric columns of ``--jobs 1``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import queue
from ..engine.liveness import Heartbeat
from ..engine.storage import GRACE_FACTOR, MAX_RETRY, open_storage, quiet_optuna
from ..engine.workers import WorkerError
from ..errors import UsageError
from ..store import RunStore
from ..train.callbacks import Callback
from ..experiment.strategy import Strategy

KIND = "compare"
GROUP = "compare"


@dataclass(frozen=True)
class Plan:
    """What every worker needs (picklable; rebuilt from the study's settings by :func:`join`)."""

    workload: str | None  # a name or an absolute file.py:FUNC reference; None: an object, this process only
    strategies: tuple[Strategy, ...]
    seeds: int
    steps: int
    batch_size: Any
    eval_every: int
    target: float | None
    tune: str | None
    metric: str
    metric_mode: str
    storage: str
    name: str
    heartbeat: int
    data_dir: str | None = None
    device: str = "auto"
    tensorboard: str | None = None
    checkpoints: str = "."  # where this machine keeps the checkpoints of the runs it trains

    def settings(self) -> dict[str, Any]:
        """What a command continuing this comparison must share with it (and what a worker elsewhere rebuilds from)."""
        return {"workload": self.workload, "strategies": [s.to_dict() for s in self.strategies], "seeds": self.seeds,
                "steps": self.steps, "batch_size": self.batch_size, "eval_every": self.eval_every,
                "target": self.target, "tune": self.tune, "metric": self.metric, "metric_mode": self.metric_mode}

    @classmethod
    def from_settings(cls, saved: dict[str, Any], **machine: Any) -> Plan:
        strategies = tuple(Strategy(**{**d, "groups": tuple(d.get("groups") or ())}) for d in saved["strategies"])
        return cls(**{**saved, "strategies": strategies}, **machine)


def run_keys(plan: Plan, lrs: dict[str, float | None]) -> list[dict[str, Any]]:
    """The runs, in the order of summary.csv: seed by seed, strategies in their given order."""
    return [{"strategy": s.label, "index": i, "seed": seed, "lr": lrs.get(s.label)}
            for seed in range(plan.seeds) for i, s in enumerate(plan.strategies)]


def run_name(key: dict[str, Any]) -> str:
    return f"{key['strategy']}/seed{key['seed']}"


def _folder(key: dict[str, Any]) -> str:
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in key["strategy"])
    return f"{label}-seed{key['seed']}"


@dataclass
class _Hooks:
    """What this process adds to each run: extra callbacks (in-process only) and a bar."""

    callbacks: Callable[[str, int], Sequence[Callback]] | None = None
    bar: Callback | None = None
    extra: list = field(default_factory=list)


def _callbacks(plan: Plan, key: dict[str, Any], hooks: _Hooks) -> list[Callback]:
    out: list[Callback] = [hooks.bar if hooks.bar is not None else Callback()]  # same list everywhere: resumable
    if plan.tensorboard:
        from ..train.tensorboard import TensorBoardLogger

        out.append(TensorBoardLogger(plan.tensorboard, run_name=run_name(key)))
    if hooks.callbacks is not None:
        out.extend(hooks.callbacks(key["strategy"], key["seed"]))
    return out


def _row(plan: Plan, strategy: Strategy, key: dict[str, Any], summary: dict[str, Any],
         config: dict[str, Any]) -> dict[str, Any]:
    never = math.inf if plan.target is not None else None
    return {**summary, "strategy": strategy.label, "seed": key["seed"], "optimizer": strategy.optimizer,
            "lr_source": config["lr_source"],
            "schedule": strategy.schedule,
            "steps_to_target": summary["steps_to_target"] if summary["steps_to_target"] is not None else never,
            "seconds_to_target": summary["seconds_to_target"] if summary["seconds_to_target"] is not None else never}


def _config(plan: Plan, wl: Any, strategy: Strategy, key: dict[str, Any]) -> dict[str, Any]:
    from .. import optim, schedules
    from ..experiment.single import lr_and_source

    lr, source = lr_and_source(strategy, wl, key["lr"], plan.tune)
    return {**strategy.to_dict(), "strategy": strategy.label, "hparams": {**strategy.hparams, "lr": lr},
            "lr_source": source, "optimizer_source": optim.origin(strategy.optimizer),
            "schedule_source": schedules.origin(strategy.schedule) if strategy.schedule else None,
            "seed": key["seed"], "workload": wl.name, "workload_ref": plan.workload, "metric": wl.metric,
            "metric_mode": wl.metric_mode, "target": plan.target, "steps": plan.steps, "batch_size": plan.batch_size,
            "eval_every": plan.eval_every, "tuned": plan.tune or False}


def _value(row: dict[str, Any], mode: str) -> float:
    value = row.get("final_metric")
    if isinstance(value, float) and math.isfinite(value):
        return value
    return -math.inf if mode == "max" else math.inf


def work(plan: Plan, send: Callable[[str, str], None], *, workload: Any = None, hooks: _Hooks | None = None) -> None:
    """One worker: take runs from the study until none is waiting or running."""
    from optuna.trial import TrialState

    from .. import workloads
    from ..experiment.single import train_one, warm_up

    hooks = hooks or _Hooks()
    with quiet_optuna():
        storage = open_storage(plan.storage, plan.heartbeat, MAX_RETRY)
        study = queue.find(storage, plan.name)
        if study is None:
            raise UsageError(f"no comparison {plan.name!r} in the storage")
        wl = workloads.resolve(workload if workload is not None else plan.workload, seed=0, data_dir=plan.data_dir)
        by_label = {s.label: s for s in plan.strategies}
        store = RunStore(plan.storage)
        warmed = False
        while True:
            what, trial = queue.claim(study, storage, plan.storage, GRACE_FACTOR * plan.heartbeat)
            if what == "done":
                return
            if what == "wait":  # the last runs are running elsewhere: one may die and come back
                time.sleep(min(1.0, plan.heartbeat))
                continue
            key = trial.user_attrs[queue.RUN]
            strategy = by_label[key["strategy"]]
            folder = Path(plan.checkpoints) / "runs" / _folder(key)
            with Heartbeat(storage, trial._trial_id, plan.heartbeat):
                if not warmed:  # one-time costs, before this worker's first timed run
                    warm_up(wl, plan.strategies, steps=plan.steps, batch_size=plan.batch_size, device=plan.device,
                            log=lambda msg: None)
                    warmed = True
                resumed = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").glob("step-*.pt"))
                send("start", json.dumps({**key, "resumed": resumed}))
                try:
                    summary, rows = train_one(
                        wl, strategy, key["seed"], steps=plan.steps, batch_size=plan.batch_size,
                        eval_every=plan.eval_every, target=plan.target, lr=key["lr"], device=plan.device,
                        callbacks=_callbacks(plan, key, hooks), checkpoint_dir=str(folder / "checkpoints"))
                    config = _config(plan, wl, strategy, key)
                    row = _row(plan, strategy, key, summary, config)
                    store.record(run_name(key), config, rows, row,
                                 status=summary["status"], group=GROUP, study=plan.name)
                except Exception as exc:  # noqa: BLE001 - recorded on the trial; the other runs go on
                    storage.set_trial_user_attr(trial._trial_id, "error", f"{type(exc).__name__}: {exc}"[:500])
                    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                    send("failed", json.dumps({**key, "error": f"{type(exc).__name__}: {exc}"}))
                    continue
            storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, values=[_value(row, plan.metric_mode)])
            shutil.rmtree(folder, ignore_errors=True)
            send("done", json.dumps({**key, "status": row["status"], "best_metric": row.get("best_metric"),
                                     "wall_seconds": row["wall_seconds"]}))


def _work_in_worker(plan: Plan, send: Callable[[str, str], None]) -> None:
    work(plan, send)


class Progress:
    """The whole job's progress, read from the storage: runs done / running / left and an ETA
    from the finished runs' durations and the number of workers at work (any machine's)."""

    def __init__(self, plan: Plan, storage: Any, log: Callable[[str], None], bar: Any = None):
        self.plan, self.storage, self.log, self.bar = plan, storage, log, bar
        self.total = len(plan.strategies) * plan.seeds

    def status(self) -> str:
        import datetime

        study = queue.find(self.storage, self.plan.name)
        trials = study.get_trials(deepcopy=False) if study is not None else []
        done = {json.dumps(t.user_attrs.get(queue.RUN), sort_keys=True) for t in trials if t.state.name == "COMPLETE"}
        running = [t for t in trials if t.state.name == "RUNNING"]
        left = max(0, self.total - len(done) - len(running))
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                     if t.state.name == "COMPLETE" and t.datetime_complete and t.datetime_start]
        # the most workers seen at once: between two runs a worker holds none for a moment
        self.workers = max(getattr(self, "workers", 1),
                           len({json.dumps(t.system_attrs.get(queue.OWNER), sort_keys=True) for t in running}))
        workers = self.workers
        if durations:
            per_run = sum(durations) / len(durations)
            now = datetime.datetime.now()
            running_left = sum(max(0.0, per_run - (now - t.datetime_start).total_seconds())
                               for t in running if t.datetime_start)
            eta_s = (running_left + left * per_run) / workers
            eta = f"{int(eta_s // 60)}m{int(eta_s % 60):02d}s"
        else:
            eta = "unknown"
        return f"{len(done)}/{self.total} done, {len(running)} running, {left} left, ETA {eta}"

    def __call__(self, kind: str, text: str) -> None:
        if kind not in ("start", "done", "failed"):
            return
        key = json.loads(text)
        head = f"{key['strategy']} seed {key['seed']}"
        if kind == "start":
            if self.bar is not None:
                self.bar.begin(head)
            self.log(f"[{self.status()}] {head}: " + ("continuing from its checkpoint" if key.get("resumed")
                                                     else f"training {self.plan.steps} steps"))
            return
        if self.bar is not None:
            self.bar.end()
        if kind == "failed":
            self.log(f"[{self.status()}] {head}: failed: {key['error']}")
            return
        best = key.get("best_metric")
        what = "diverged" if key["status"] == "diverged" else f"best {best:.4g}"
        self.log(f"[{self.status()}] {head}: {what} in {key['wall_seconds']:.1f} s")


class StepBar(Callback):
    """A bar over the steps of the run training in this process (a terminal and ``jobs=1`` only)."""

    def __init__(self, steps: int):
        self.steps, self.tqdm = steps, None

    def begin(self, desc: str) -> None:
        from tqdm.auto import tqdm
        import sys

        self.tqdm = tqdm(total=self.steps, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)

    def on_step_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if self.tqdm is not None and trainer.step % 20 == 0:
            self.tqdm.update(20)
            self.tqdm.set_postfix(loss=f"{trainer.last_loss:.3g}", refresh=False)

    def end(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
            self.tqdm = None


def execute(plan: Plan, jobs: int, *, workload: Any = None, callbacks=None, bar: bool = False,
            log: Callable[[str], None] = print) -> None:
    """Run every waiting run of the study: here (``jobs=1``) or in ``jobs`` worker processes."""
    with quiet_optuna():
        storage = open_storage(plan.storage, plan.heartbeat, MAX_RETRY)
    step_bar = StepBar(plan.steps) if bar and jobs == 1 else None
    progress = Progress(plan, storage, log, step_bar)
    if jobs == 1:
        work(plan, progress, workload=workload, hooks=_Hooks(callbacks=callbacks, bar=step_bar))
        return
    queue.drain(_work_in_worker, plan, jobs, storage, plan.name, log=log, on_message=progress,
                process_name="descentlab-compare")


def collect(plan: Plan) -> list[dict[str, Any]]:
    """The summary.csv rows, in run order; a run that has no result is a WorkerError naming it."""
    from ..report.aggregate import latest_runs

    runs = {run_name({"strategy": r["config"]["strategy"], "seed": r["config"]["seed"]}): r
            for r in latest_runs(RunStore(plan.storage).runs(GROUP, study=plan.name))}
    rows, missing = [], []
    for key in run_keys(plan, {}):
        run = runs.get(run_name(key))
        if run is None or run.get("summary") is None:
            missing.append(run_name(key))
        else:
            rows.append(run["summary"])
    if missing:
        errors = _errors(plan)
        why = "; ".join(f"{n}: {errors[n]}" for n in missing if n in errors)
        raise WorkerError(f"{len(missing)} run(s) have no result ({', '.join(missing[:5])})" + (f": {why}" if why else ""))
    return rows


def _errors(plan: Plan) -> dict[str, str]:
    with quiet_optuna():
        study = queue.find(open_storage(plan.storage, plan.heartbeat, MAX_RETRY), plan.name)
    return {run_name(t.user_attrs[queue.RUN]): t.user_attrs["error"] for t in study.get_trials(deepcopy=False)
            if "error" in t.user_attrs and queue.RUN in t.user_attrs} if study is not None else {}
