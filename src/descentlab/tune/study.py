"""``tune``: an Optuna study (Akiba et al. 2019) over whole training strategies.

Each trial is one ``train`` run (:func:`descentlab.experiment.run.run_training`)
in ``DIR/trials/NNNN`` with a strategy drawn from the search space
(:mod:`descentlab.tune.space`) by TPE (Bergstra et al. 2011); the objective is the
run's final validation metric, maximized or minimized as the workload says. A
pruner stops poor trials early from the validation metric the Trainer reports at
each evaluation (the Optuna step is the evaluation's number, so trials of any
batch size compare at the same fraction of their budget).

**Exactly N trials, resumable, none left RUNNING.** ``trials=N`` is the study's
total of finished (COMPLETE or PRUNED) trials, not a number of new ones as in
``study.optimize`` (Optuna issue #2638). Workers ask for trials with ask/tell,
each ask under a lock over the whole storage (:func:`descentlab.engine.mutex.storage_lock`:
a file lock beside an SQLite file, an advisory lock on PostgreSQL), after counting:

* finished ≥ N: stop; finished + running ≥ N: wait (another worker's trial may
  still fail and need a rerun); else ``study.ask()``, which first takes a WAITING
  trial (a retry) and otherwise creates one. So no worker creates a trial beyond N.
* Before counting, dead trials are failed: RUNNING trials whose owner process
  (pid, process start time and host, recorded as the trial's system attribute
  ``descentlab:owner`` as the trial is created) is gone from this machine, at
  once; RUNNING trials with no owner after the grace period (a process killed
  while it created its trial); and, for owners on other machines, those whose
  heartbeat is older than the grace period
  (:func:`optuna.storages.fail_stale_trials`). Optuna's
  ``RetryHeartbeatStaleTrialCallback`` queues each failed trial again, with the
  same parameters, as a WAITING trial (up to :data:`MAX_RETRY` times). A command SIGKILLed and run again therefore
  reruns the killed trials at once (no need to wait for the grace period) and
  ends with exactly N finished trials.
* While a trial trains, a thread records its heartbeat every
  :data:`HEARTBEAT_INTERVAL` seconds (``DESCENTLAB_TUNE_HEARTBEAT`` overrides it,
  e.g. for tests); the first one is recorded under the lock, as the trial is
  created. Stale after ``GRACE_FACTOR ×`` the interval.

**Workers.** ``jobs=1`` runs in this process. ``jobs=N`` starts N worker
processes (one torch thread each by default) sharing the storage, forked from
multiprocessing's fork server (imports paid once). Each worker reads a pipe whose
only writing end ``tune`` holds: the read ends the moment ``tune`` dies, however
it dies, and the worker SIGKILLs itself; so a SIGKILLed ``tune`` leaves no orphan
that would hold trials RUNNING or finish them behind a rerun's back.

**Seeds.** Every trial trains with ``seed`` (the same data order and
initialization: trials differ only in their strategy). The sampler is TPE,
independent per parameter (conditional parameters such as ``warmup`` need no
grouping), re-seeded for each trial from ``(seed, trial number)``: a study is
reproducible in one process, and parallel workers do not draw the same startup
points.

Storage: ``DIR/study.sqlite`` by default; any SQLAlchemy URL (``postgresql://...``)
through Optuna's RDBStorage (:mod:`descentlab.engine`). Workers on other machines join
with ``descentlab worker --storage URL --study NAME`` (:func:`join`): the study holds
the settings they need.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine.liveness import OWNER, Heartbeat, fail_dead, owner
from ..engine.mutex import storage_lock
from ..engine.storage import GRACE_FACTOR, HEARTBEAT_ENV, HEARTBEAT_INTERVAL, MAX_RETRY, check_url  # noqa: F401
from ..engine.storage import heartbeat_interval, mask, open_storage, quiet_optuna  # noqa: F401
from ..engine.workers import WorkerError, run_workers as _run_workers
from ..errors import UsageError
from ..train.callbacks import Callback
from . import space as spaces
from .settings import STATES, Settings, counts  # noqa: F401  (re-exported: tune's public names)

PRUNERS = ("hyperband", "halving", "median", "none")
DEFAULT_PRUNER = "none"  # measured on mnist1d-cnn at the recipe budget: docs/tune.md, "Which pruner"
STUDY_FILE = ".tune-study.json"  # which study this folder holds
KIND = "tune"  # the study's user attribute "descentlab:kind": what `descentlab worker` joins
KIND_ATTR, INPUTS_ATTR = "descentlab:kind", "descentlab:inputs"


class TrialError(WorkerError):
    """A trial raised an error that is not the user's input (exit 1)."""


def make_pruner(name: str, max_resource: int | None):
    """The pruner ``name`` (see :data:`PRUNERS`); resources are evaluations of the run."""
    import optuna

    top = max_resource or "auto"
    if name == "hyperband":  # Li et al. 2017: brackets of successive halving, reduction 3
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top, reduction_factor=3)
    if name == "halving":  # asynchronous successive halving (Li et al. 2020), Optuna's defaults
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "median":  # median rule after 5 trials and a quarter of the run
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, (max_resource or 4) // 4))
    return optuna.pruners.NopPruner()


class PruningCallback(Callback):
    """Reports the validation metric at each evaluation (step: the evaluation's number)
    and stops the run when the pruner says so. Stopping, rather than raising
    ``TrialPruned`` out of the loop, lets the run write its summary.json and
    metrics.csv like any other; the trial is then told PRUNED."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.key = trial, f"val_{metric}"
        self.evaluations = 0
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        value = logs.get(self.key)
        if value is None or not math.isfinite(value):
            return
        self.evaluations += 1
        self.trial.report(float(value), self.evaluations)
        if trainer.step < trainer.total_steps and self.trial.should_prune():
            self.pruned_at = trainer.step
            trainer.should_stop, trainer.stop_reason = True, "pruned"


# -- the worker loop --------------------------------------------------------------------


def _next_trial(study: Any, storage: Any, s: Settings) -> Any | None:
    """The next trial to run (a retry first), or None once the study has ``s.trials`` finished."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    while True:
        with storage_lock(s.storage, f"tune-ask:{s.study_name}"):
            fail_dead(study, storage, GRACE_FACTOR * s.heartbeat)
            n = counts(study.get_trials(deepcopy=False))
            done = n["COMPLETE"] + n["PRUNED"]
            if done >= s.trials:
                return None
            if done + n["RUNNING"] < s.trials:
                trial = study.ask()
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                storage.set_trial_system_attr(trial_id, OWNER, owner())
                storage.record_heartbeat(trial_id)
                study.sampler = optuna.samplers.TPESampler(seed=(s.seed * 100_003 + trial.number) % 2**32)
                return trial
        time.sleep(min(1.0, s.heartbeat))  # trials of other processes are running: wait for them to end or die


def _params_text(config: dict[str, Any]) -> str:
    parts = [f"optimizer={config['optimizer']}", f"lr={config['lr']:.3g}", f"schedule={config['schedule']}"]
    if "warmup_steps" in config.get("sched", {}):
        parts.append(f"warmup_steps={config['sched']['warmup_steps']}")
    if config.get("weight_decay") is not None:
        parts.append(f"weight_decay={config['weight_decay']:.2g}")
    parts.append(f"batch_size={config['batch_size']}")
    return " ".join(parts)


def _run_trial(study: Any, trial: Any, storage: Any, s: Settings) -> str:
    """Train one sampled strategy; tell the study; return the line to print."""
    from optuna.trial import TrialState

    from ..experiment.config import TrainConfig
    from ..experiment.run import run_training
    from ..train.trainer import NonFiniteLossError

    folder = Path(s.out) / "trials" / f"{trial.number:04d}"
    callback = PruningCallback(trial, s.metric)
    state, value, start = TrialState.COMPLETE, None, time.perf_counter()
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                               trial.number)
    with Heartbeat(storage, trial_id, s.heartbeat):
        try:
            choice = s.space.suggest(trial)
            config = spaces.trial_config(choice, s.space, workload=s.workload, steps=s.steps, epochs=s.epochs,
                                         seed=s.seed, data_dir=s.data_dir, n_train=s.n_train,
                                         recipe_batch=s.recipe_batch)
            trial.set_user_attr("config", config)
            if folder.exists():  # a trial number is run by one worker at a time: this is a dead attempt's
                shutil.rmtree(folder)
            summary = run_training(TrainConfig(**config, out=str(folder), quiet=True), log=lambda msg: None,
                                   callbacks=[callback])
            value = summary["final"].get(f"val_{s.metric}")
            if value is None or not math.isfinite(value):
                raise NonFiniteLossError(f"the final validation {s.metric} is {value}")
        except NonFiniteLossError as exc:
            state = TrialState.PRUNED
            trial.set_user_attr("diverged", str(exc).splitlines()[0][:300] if str(exc) else "diverged")
        except BaseException as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            if isinstance(exc, Exception):
                raise TrialError(f"trial {trial.number} failed: {type(exc).__name__}: {exc}") from exc
            raise
    if callback.pruned_at is not None:
        state = TrialState.PRUNED
    seconds = time.perf_counter() - start
    saved = folder / "summary.json"
    steps = json.loads(saved.read_text()).get("steps") if saved.exists() else None
    trial.set_user_attr("steps", steps)
    trial.set_user_attr("seconds", round(seconds, 3))
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
        result = f"{s.metric} {value:.4f}"
    else:
        study.tell(trial, state=TrialState.PRUNED)
        last = trial.storage.get_trial(trial_id).value if "diverged" not in trial.user_attrs else None
        result = "diverged" if last is None else f"at step {callback.pruned_at}: {s.metric} {last:.4f}"
    return (f"trial {trial.number:>3} {state.name.lower():<8} {result}  {_params_text(config)}  "
            f"({steps} steps, {seconds:.1f} s)")


def load_study(storage: Any, s: Settings):
    import optuna

    return optuna.load_study(study_name=s.study_name, storage=storage,
                             sampler=optuna.samplers.TPESampler(seed=s.seed),
                             pruner=make_pruner(s.pruner, s.max_resource))


def work(s: Settings, log: Callable[[str], None], storage: Any = None) -> None:
    """One worker: run trials until the study has ``s.trials`` finished ones."""
    with quiet_optuna():
        storage = storage or open_storage(s.storage, s.heartbeat)
        study = load_study(storage, s)
        while (trial := _next_trial(study, storage, s)) is not None:
            log(_run_trial(study, trial, storage, s))


# -- worker processes ---------------------------------------------------------------------


def _worker(s: Settings, send: Callable[[str, str], None]) -> None:
    work(s, lambda line: send("log", line))


def run_workers(s: Settings, jobs: int, log: Callable[[str], None]) -> None:
    """``jobs`` worker processes on this machine (:func:`descentlab.engine.workers.run_workers`)."""
    try:
        _run_workers(_worker, s, jobs, threads=s.threads or 1, log=log, name="descentlab-tune")
    except WorkerError as exc:
        raise TrialError(str(exc)) from None


# -- the study: settings, outputs, the Python API ---------------------------------------------


def _positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"invalid {name}={value!r}: expected an integer >= 1")


def prepare(workload: Any, *, trials: int, storage: str | None, jobs: int, out: str | os.PathLike | None, seed: int,
            steps: int | None, epochs: int | None, space: Any, pruner: str, study_name: str | None,
            data_dir: str | None, threads: int | None) -> Settings:
    """Check every input (nothing is written) and return the settings of the study."""
    from .. import workloads
    from ..workloads.recipes import steps_per_epoch
    from ..workloads.user import absolute, is_reference

    _positive("trials", trials)
    _positive("jobs", jobs)
    _positive("steps", steps)
    _positive("epochs", epochs)
    _positive("threads", threads)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"invalid seed={seed!r}: expected an integer >= 0")
    if steps is not None and epochs is not None:
        raise UsageError("give steps or epochs, not both")
    if pruner not in PRUNERS:
        raise UsageError(f"invalid pruner={pruner!r}: expected one of {', '.join(PRUNERS)}")
    if study_name is not None and (not isinstance(study_name, str) or not study_name.strip()):
        raise UsageError(f"invalid study name {study_name!r}: expected a non-empty string")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"invalid data_dir={data_dir!r}: no such directory")
    if storage is not None:
        check_url(storage, jobs)
    heartbeat = heartbeat_interval()
    if not isinstance(workload, str) or not workload:
        raise UsageError(f"invalid workload={workload!r}: expected a name or path/to/file.py:FUNC")
    if is_reference(workload):
        workload = absolute(workload)
    wl = workloads.load(workload, seed=seed, data_dir=data_dir)

    if space is None or isinstance(space, dict):
        where = "the search space"
        built = spaces.build(wl, space)
    else:
        where = f"search space {str(space)!r}"
        built = spaces.load(space, wl)
    recipe = wl.recipe
    if steps is None and epochs is None:
        steps, epochs = recipe["steps"], recipe["epochs"]
    n_train = wl.num_examples("train")
    batches = built.batch_size.values if built.batch_size else (recipe["batch_size"],)
    shortest = min(min(steps or math.inf, (epochs or math.inf) * steps_per_epoch(n_train, b)) for b in batches)
    spaces.check(built, int(shortest), where)

    eval_every = built.fixed.get("eval_every")
    if steps is not None:
        max_resource = steps // (eval_every or max(1, steps // 20))
    else:
        max_resource = None if eval_every else epochs
    out = Path(out if out is not None else f"tune-{wl.name}")
    url = storage or f"sqlite:///{(out / 'study.sqlite').resolve()}"
    return Settings(
        workload=workload, metric=wl.metric, direction="maximize" if wl.metric_mode == "max" else "minimize",
        trials=trials, storage=url, study_name=study_name or f"descentlab-tune-{wl.name}", out=str(out.resolve()),
        seed=seed, steps=steps, epochs=epochs, space=built, pruner=pruner, max_resource=max_resource or None,
        n_train=n_train, recipe_batch=recipe["batch_size"], data_dir=data_dir, threads=threads, heartbeat=heartbeat,
    )


def _check_study(storage: Any, s: Settings) -> None:
    """A study of this name in the storage must have searched the same thing."""
    import optuna

    names = {st.study_name: st for st in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if s.study_name not in names:
        return
    saved = names[s.study_name].user_attrs.get("descentlab")
    mine = s.record()
    if saved is None:
        raise UsageError(f"study {s.study_name!r} in {mask(s.storage)!r} was not made by descentlab tune; "
                         "use another --study-name")
    for key, value in mine.items():
        if saved.get(key) != value:
            raise UsageError(f"study {s.study_name!r} in {mask(s.storage)!r} searched {key}={saved.get(key)!r}, "
                             f"not {value!r}: rerun it with the same settings, or use another --study-name or --out")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _drop_waiting(study: Any, storage: Any) -> None:
    """Retries queued beyond the total (a rerun with a smaller --trials) are not run: failed."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        with contextlib.suppress(Exception):
            storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                           state=TrialState.FAIL)


def tune(workload: Any, *, trials: int = 20, storage: str | None = None, jobs: int = 1,
         out: str | os.PathLike | None = None, seed: int = 0, steps: int | None = None, epochs: int | None = None,
         space: Any = None, pruner: str = DEFAULT_PRUNER, study_name: str | None = None, data_dir: str | None = None,
         threads: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Search strategies for ``workload`` until the study holds ``trials`` finished trials.

    ``space``: None (the default space), a mapping or the path of a YAML file
    (:mod:`descentlab.tune.space`). ``storage``: an SQLAlchemy URL (default
    ``sqlite:///OUT/study.sqlite``). ``jobs``: trials at once, in worker processes.
    ``threads``: torch threads of each worker process (None: 1; with ``jobs=1`` the trials run
    in this process, whose setting is left as it is). Returns the content of ``OUT/tune.json``; also writes
    ``best.yaml`` and ``report.html``. Bad input raises UsageError before anything is written.
    """
    import optuna

    from ..experiment.lock import hold
    from .tune_report import write_outputs

    s = prepare(workload, trials=trials, storage=storage, jobs=jobs, out=out, seed=seed, steps=steps, epochs=epochs,
                space=space, pruner=pruner, study_name=study_name, data_dir=data_dir, threads=threads)
    default_db = Path(s.out) / "study.sqlite"
    with quiet_optuna():
        store = open_storage(s.storage, s.heartbeat) if storage is not None or default_db.exists() else None
        marker, mine = Path(s.out) / STUDY_FILE, {"study_name": s.study_name, "storage": mask(s.storage)}
        saved = json.loads(marker.read_text()) if marker.exists() else mine
        if saved != mine:  # its trials/NNNN folders and outputs are that study's
            raise UsageError(f"{s.out!r} holds study {saved.get('study_name')!r} in {saved.get('storage')!r}: "
                             "one study per folder; use another --out")
        if store is not None:
            _check_study(store, s)
        with hold(s.out):  # one command per folder; creates it
            _write_text(marker, json.dumps(mine) + "\n")
            store = store or open_storage(s.storage, s.heartbeat)
            study = optuna.create_study(study_name=s.study_name, storage=store, direction=s.direction,
                                        load_if_exists=True)
            if "descentlab" not in study.user_attrs:
                study.set_user_attr("descentlab", s.record())
                study.set_user_attr(KIND_ATTR, KIND)
                study.set_user_attr(INPUTS_ATTR, _inputs(workload=s.workload, trials=trials, seed=seed, steps=steps,
                                                         epochs=epochs, space=space, pruner=pruner))
            n = counts(study.get_trials(deepcopy=False))
            done = n["COMPLETE"] + n["PRUNED"]
            left = max(0, s.trials - done)
            log(f"study {s.study_name} in {mask(s.storage)}: {done} of {s.trials} trials finished"
                + (f", running {left} (jobs={min(jobs, left)}, pruner {s.pruner})" if left else ""))
            if left and jobs == 1:
                work(s, log, store)
            elif left:
                run_workers(s, min(jobs, left), log)
            _drop_waiting(study, store)
            result = write_outputs(study, s)
    if result["best_trial"] is None:
        log(f"no trial completed ({result['n_pruned']} pruned or diverged); wrote {s.out}/tune.json, report.html")
    else:
        best = next(r for r in result["trials"] if r["number"] == result["best_trial"])
        log(f"best: trial {result['best_trial']} {result['metric']} {result['best_value']:.4f}  "
            f"{_params_text(best['config'])}")
        log(f"wrote {s.out}/best.yaml, tune.json, report.html")
    return result


def _inputs(*, workload: str, trials: int, seed: int, steps: int | None, epochs: int | None, space: Any,
            pruner: str) -> dict[str, Any]:
    """What a worker on another machine needs to run this study's trials (the search space as data)."""
    if space is not None and not isinstance(space, dict):
        from ..experiment.config import load_yaml_data

        space = load_yaml_data(space) or {}
    return json.loads(json.dumps({"workload": workload, "trials": trials, "seed": seed, "steps": steps,
                                  "epochs": epochs, "space": space, "pruner": pruner}))


def join(url: str, study_name: str, *, out: str | os.PathLike, jobs: int = 1, data_dir: str | None = None,
         threads: int | None = None, log: Callable[[str], None] = print) -> int:
    """Run trials of the study ``study_name`` in ``url`` (``descentlab worker``) until it holds its
    total; each trial's files go to ``out/trials/NNNN``. Returns the number of trials this ran."""
    with quiet_optuna():
        store = open_storage(url, heartbeat_interval())
        import optuna

        study = optuna.load_study(study_name=study_name, storage=store)
        inputs = study.user_attrs.get(INPUTS_ATTR)
        if inputs is None:
            raise UsageError(f"study {study_name!r} in {mask(url)!r} was made by an earlier descentlab tune: "
                             "it cannot be joined")
        s = prepare(inputs["workload"], trials=inputs["trials"], storage=url, jobs=jobs, out=out, seed=inputs["seed"],
                    steps=inputs["steps"], epochs=inputs["epochs"], space=inputs["space"], pruner=inputs["pruner"],
                    study_name=study_name, data_dir=data_dir, threads=threads)
        Path(s.out).mkdir(parents=True, exist_ok=True)
        before = counts(study.get_trials(deepcopy=False))
        log(f"joined study {study_name} in {mask(url)}: {before['COMPLETE'] + before['PRUNED']} of {s.trials} "
            f"trials finished; running trials with {jobs} worker(s)")
        if jobs == 1:
            work(s, log, store)
        else:
            run_workers(s, jobs, log)
    return 0
