"""Run a comparison: every strategy × seed on one workload, with equal budgets.

Fairness rules (DeepOBS, AlgoPerf):

* every strategy gets the same number of optimizer steps, and for seed k the
  same model initialization (``torch.manual_seed(k)`` before ``make_model``)
  and the same data order (the trainer's batches are seeded with k); the data
  split is the workload's seed-0 split for all;
* each strategy's lr is its documented default for the workload unless given;
  with ``tune`` every strategy gets the same tuning budget first, so that
  tuned strategies are compared, not one tuned against untuned ones:
  ``"lr-find"`` runs the range test (:func:`descentlab.tune.lr_find`, 3 sweeps
  of 100 steps on seed 0's model) and takes its suggestion; ``"sweep"`` trains
  lr ∈ default × {1/10, 1/3, 1, 3, 10} for a fifth of the budget (seed 0) and
  keeps the best by validation metric. ``tune=True`` is :data:`DEFAULT_TUNE`,
  chosen by measurement (BENCHMARKS.md, "lr-find");
* time-to-target (AlgoPerf): training seconds and steps until the validation
  metric first reaches the target, evaluation time excluded; never → ∞.
* a strategy that diverges (non-finite loss) is recorded as diverged and the
  comparison goes on.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


from .. import workloads
from ..errors import UsageError
from ..experiment.build import build
from ..experiment.lock import hold
from ..experiment.single import (  # noqa: F401  (the single run, re-exported where it used to live)
    CHECKPOINTS, WARMUP_STEPS, _build, _has_lr, _hparams, _trainer, lr_and_source, time_to_target, train_one,
    validate, warm_up,
)
from ..experiment.strategy import Strategy, coerce
from ..report.table import write_csv as _write_csv
from ..train.callbacks import Callback

GROUP = "compare"

#: Default --target per workload: a validation level that the workload's
#: recipe reaches (measured: mnist1d-cnn adam/adamw best 0.92-0.93 at 4000
#: steps, the 90% of MEASURED.md; digits ~0.98; linreg R² ~0.78; diabetes test
#: R² 0.44-0.51; mnist1d MLP/logreg just under their published 68% / 32%), so
#: that time-to-target separates fast strategies from slow ones.
DEFAULT_TARGETS = {
    "linreg": 0.75, "diabetes": 0.4, "digits-mlp": 0.95, "digits-cnn": 0.95,
    "mnist1d-logreg": 0.3, "mnist1d-mlp": 0.6, "mnist1d-cnn": 0.9, "mnist-cnn": 0.98,
    "charlm": 2.0,  # validation bpc (lower is better): the recipe's AdamW reaches it near step 900 of 2000
}
SWEEP = (0.1, 0.3, 1.0, 3.0, 10.0)
TUNE_MODES = ("lr-find", "sweep")
#: what ``tune=True`` means: decided by benchmarks/lr_find_quality.py (BENCHMARKS.md, "lr-find")
DEFAULT_TUNE = "lr-find"
CSV_COLUMNS = ("strategy", "seed", "final_metric", "best_metric", "steps_to_target", "seconds_to_target",
               "wall_seconds", "status", "optimizer", "lr", "schedule", "test_final_metric", "lr_source")


def tune_lr(wl, strategy: Strategy, *, steps: int, batch_size, eval_every: int, store: Any, log,
            study: str = "") -> float:
    """The best lr of the sweep default × SWEEP, by best validation metric (seed 0)."""
    base = _hparams(strategy, wl)["lr"]
    best_lr, best_value = base, None
    for factor in SWEEP:
        lr = base * factor
        summary, rows = train_one(wl, strategy, 0, steps=steps, batch_size=batch_size, eval_every=eval_every,
                                  target=None, lr=lr)
        run_id = store.start(f"{strategy.label}/lr{lr:.3g}", {**strategy.to_dict(), "lr": lr, "seed": 0}, group="tune", study=study)
        store.finish(run_id, rows, summary, status=summary["status"])
        value = summary["best_metric"]
        if value is not None and math.isfinite(value):
            better = best_value is None or (value > best_value if wl.metric_mode == "max" else value < best_value)
            if better:
                best_lr, best_value = lr, value
    log(f"  tuned {strategy.label}: lr {best_lr:.3g} (swept {base * SWEEP[0]:.3g}..{base * SWEEP[-1]:.3g})")
    return best_lr


def find_lr(wl, strategy: Strategy, *, steps: int, batch_size, out: Path, log) -> float:
    """The range test's suggestion for ``strategy`` on seed 0's model; writes
    ``out/lr_find/<strategy>/lr_find.json`` and ``.png``."""
    from ..tune import lr_find
    from ..tune.find import DEFAULT_SWEEPS, write

    model, optimizer, _ = build(wl, strategy.optimizer, _hparams(strategy, wl), None, {}, seed=0, total_steps=steps,
                                groups=strategy.groups)
    result = lr_find(model, optimizer, wl.loss_fn, wl.train, batch_size=batch_size, seed=0, sweeps=DEFAULT_SWEEPS,
                     target_key=wl.target_key, optimizer_name=strategy.optimizer, clip_norm=strategy.clip_norm)
    folder = out / "lr_find" / "".join(c if c.isalnum() or c in "-_." else "_" for c in strategy.label)
    write(result, folder, workload=wl.name, extra={"strategy": strategy.label})
    spread = result.confidence.get("spread")
    log(f"  tuned {strategy.label}: lr {result.suggested_lr:.3g} (lr-find, {result.rule}"
        + (f", spread x{spread:.2g}" if spread else "") + f"; default {_hparams(strategy, wl)['lr']:.3g})")
    return result.suggested_lr


def tune_mode(tune: bool | str) -> str | None:
    """None (no tuning) or one of :data:`TUNE_MODES`."""
    if tune is False or tune is None:
        return None
    if tune is True:
        return DEFAULT_TUNE
    if tune not in TUNE_MODES:
        raise UsageError(f"invalid tune_lr={tune!r}: expected one of {', '.join(TUNE_MODES)} (or true/false)")
    return tune


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> None:
    """summary.csv: ``rows`` in compare's columns (:func:`descentlab.report.table.write_csv`)."""
    _write_csv(path, rows, columns)


def run_comparison(
    workload: Any,
    strategies: Sequence[Any],
    *,
    out: str | Path,
    seeds: int = 1,
    steps: int | None = None,
    epochs: int | None = None,
    target: float | None = None,
    batch_size: int | str | None = None,
    eval_every: int | None = None,
    tune: bool | str = False,
    overwrite: bool = False,
    data_dir: str | None = None,
    device: str = "auto",
    progress: bool = True,
    schedule: str | None = None,
    schedule_kwargs: dict[str, Any] | None = None,
    callbacks: Callable[[str, int], Sequence[Callback]] | None = None,
    jobs: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    tensorboard: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the comparison; write summary.csv, the plots and report.html to ``out``, every run
    into the storage (``out/runs.sqlite`` by default, or the SQLAlchemy URL ``storage``).

    ``workload`` is a name or ``file.py:FUNC`` reference, a Workload, or a
    factory; ``strategies`` are Strategy objects, optimizer names or strategy
    dicts (as in the strategies file); ``schedule``/``schedule_kwargs`` apply
    to every strategy that sets no schedule of its own. ``callbacks(label,
    seed)`` gives extra Trainer callbacks for each timed run (``jobs=1`` only).
    ``jobs``: runs at once, each in a worker process with one torch thread (None:
    one per core for a workload given by reference, else 1). Run again after an
    interruption, the same call continues the comparison (``name``: its name in
    the storage, default ``compare-<workload>``).
    """
    from ..engine.storage import check_url, heartbeat_interval, open_storage, quiet_optuna
    from ..engine.workers import cores
    from ..store import RunStore
    from . import execute as ex

    strategies = coerce(strategies, schedule, schedule_kwargs)
    if not strategies:
        raise UsageError("no strategies to compare: give --optimizers or --strategies")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"invalid seeds={seeds!r}: expected an integer >= 1")
    for key, value in (("steps", steps), ("epochs", epochs), ("eval_every", eval_every), ("jobs", jobs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"invalid {key}={value!r}: expected an integer >= 1")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise UsageError(f"invalid comparison name {name!r}: expected a non-empty string")
    if storage is not None:
        check_url(storage, jobs or 2)
    reference = isinstance(workload, str)
    if reference and ":" in workload:
        from ..workloads.user import absolute

        workload = absolute(workload)
    from ..imports import in_process_only

    objects = [s.label for s in strategies if in_process_only(s.optimizer) or in_process_only(s.schedule)]
    if jobs is None:
        jobs = cores() if reference and callbacks is None and not objects else 1
    if (jobs > 1 or storage is not None) and objects:
        raise UsageError(f"strategy {objects[0]!r} holds a Python object that worker processes cannot import: "
                         "give its optimizer and schedule as package.module:Name or path/to/file.py:Name, "
                         f"or run with jobs=1{' and no storage' if storage is not None else ''}")
    if jobs > 1 and not reference:
        raise UsageError(f"jobs={jobs} needs the workload by name or as file.py:FUNC (worker processes load it); "
                         "a Workload object or factory runs with jobs=1")
    if jobs > 1 and callbacks is not None:
        raise UsageError(f"callbacks run in this process: give jobs=1, not jobs={jobs}")
    wl = workloads.resolve(workload, seed=0, data_dir=data_dir)
    builtin = reference and workload.strip().lower().replace("_", "-") in workloads.available()
    if target is None and builtin:
        target = DEFAULT_TARGETS.get(wl.name)
    if target is not None:
        target = wl.check_target(target)
    recipe = wl.recipe
    batch_size = batch_size if batch_size is not None else recipe["batch_size"]
    per_epoch = workloads.recipes.steps_per_epoch(wl.num_examples("train"), batch_size)
    if steps is None:
        epochs = epochs if epochs is not None else recipe["epochs"]
        steps = epochs * per_epoch if epochs is not None else recipe["steps"]
    eval_every = eval_every or max(1, steps // 40)
    mode = tune_mode(tune)
    validate(wl, strategies, steps, tune=mode is not None)
    heartbeat = heartbeat_interval()

    out = Path(out).resolve()
    url = storage or f"sqlite:///{out / 'runs.sqlite'}"
    plan = ex.Plan(workload=workload if reference else None, strategies=tuple(strategies), seeds=seeds, steps=steps,
                   batch_size=batch_size, eval_every=eval_every, target=target, tune=mode, metric=wl.metric,
                   metric_mode=wl.metric_mode, storage=url, name=name or f"compare-{wl.name}", heartbeat=heartbeat,
                   data_dir=data_dir, device=device, tensorboard=str(tensorboard) if tensorboard else None,
                   checkpoints=str(out))
    with quiet_optuna():
        if storage is not None:  # reachable, and a comparison of that name is this one: before anything is written
            study = _existing(plan, open_storage(url, heartbeat), overwrite)
        with hold(out):  # one command per folder: a second one here fails at once
            if storage is None:
                study = _existing_in_folder(plan, out, overwrite, heartbeat)
            elif study is None and overwrite:
                _forget(plan, open_storage(url, heartbeat))
            for stale in ("summary.csv", "report.html"):
                (out / stale).unlink(missing_ok=True)
            out.mkdir(parents=True, exist_ok=True)
            store_db = open_storage(url, heartbeat)
            RunStore(url)  # the run store's tables, beside Optuna's
            if study is None:
                lrs = _tune(plan, wl, strategies, mode, out, log) if mode else {}
                study, _ = ex.queue.open_queue(store_db, url, plan.name, kind=ex.KIND, settings=plan.settings(),
                                               runs=ex.run_keys(plan, lrs), direction=wl.metric_mode + "imize")
            else:  # the same comparison: continue it (every run without a result is queued again)
                keys = {json.dumps(t.user_attrs.get(ex.queue.RUN), sort_keys=True): t.user_attrs.get(ex.queue.RUN)
                        for t in study.get_trials(deepcopy=False) if ex.queue.RUN in t.user_attrs}
                ex.queue.open_queue(store_db, url, plan.name, kind=ex.KIND, settings=plan.settings(),
                                    runs=sorted(keys.values(), key=lambda k: (k["seed"], k["index"])),
                                    direction=wl.metric_mode + "imize")
            n = ex.queue.counts(ex.queue.find(store_db, plan.name))
            total = len(strategies) * seeds
            log(f"comparing {len(strategies)} strategies × {seeds} seed(s) on {wl.name}: {steps} steps each, "
                f"batch {batch_size}" + (f", target {wl.metric} {target:g}" if target is not None else "")
                + f"; {jobs} at once" + (f"; {n['COMPLETE']} of {total} runs already done" if n["COMPLETE"] else ""))
            ex.execute(plan, jobs, workload=workload, callbacks=callbacks, bar=progress, log=log)
            csv_rows = ex.collect(plan)
            with contextlib.suppress(OSError):  # every run's checkpoints are gone: their folder too, if empty
                (out / "runs").rmdir()
            write_csv(out / "summary.csv", csv_rows)
            from ..report.html import render

            report = render(out, storage=url, study=plan.name)
            return {"out": str(out), "report": str(report), "rows": csv_rows, "storage": url, "name": plan.name}


def _existing(plan, store_db, overwrite: bool):
    """The study of this comparison in the storage, None if there is none (or, with ``overwrite``, it is to be replaced);
    another comparison of that name is a UsageError, before anything is changed."""
    from ..engine import queue

    study = queue.find(store_db, plan.name)
    if study is None:
        return None
    if overwrite:  # replaced once this command holds the folder (run_comparison)
        return None
    queue.check_same(study, plan.storage, plan.name, "compare", plan.settings())
    return study


def _forget(plan, store_db) -> None:
    """Remove the comparison ``plan.name`` from its storage: its study and its runs."""
    import optuna

    from ..engine import queue

    if queue.find(store_db, plan.name) is not None:
        optuna.delete_study(study_name=plan.name, storage=store_db)
    from ..store import RunStore

    RunStore(plan.storage).delete(GROUP, plan.name)
    shutil.rmtree(Path(plan.checkpoints) / "runs", ignore_errors=True)


def _existing_in_folder(plan, out: Path, overwrite: bool, heartbeat: int):
    """:func:`_existing` for the folder's own runs.sqlite (a folder holds one comparison)."""
    from ..engine.storage import open_storage
    from ..store.runs import forget

    db = out / "runs.sqlite"
    if not db.exists():
        return None
    if overwrite:
        forget(plan.storage)
        for path in (db, *out.glob("*.png")):
            path.unlink(missing_ok=True)
        for folder in ("runs", "lr_find"):
            shutil.rmtree(out / folder, ignore_errors=True)
        return None
    store_db = open_storage(plan.storage, heartbeat)
    study = _existing(plan, store_db, overwrite=False)
    from ..store import RunStore

    if study is None and RunStore(db).runs(GROUP):
        raise UsageError(f"{str(out)!r} already holds a comparison (made before comparisons were resumable, or "
                         "under another name); pass --overwrite or another --out")
    return study


def _tune(plan, wl, strategies: Sequence[Strategy], mode: str, out: Path, log) -> dict[str, float]:
    """Each strategy's tuned lr, with the same budget for every one (in this process)."""
    warm_up(wl, strategies, steps=plan.steps, batch_size=plan.batch_size, device=plan.device, log=log)
    from ..store import RunStore

    store = RunStore(plan.storage)
    lrs: dict[str, float] = {}
    if mode == "sweep":
        log(f"tuning the learning rate of {len(strategies)} strategies ({len(SWEEP)} × {max(1, plan.steps // 5)} steps each)")
        for s in strategies:
            lrs[s.label] = tune_lr(wl, s, steps=max(1, plan.steps // 5), batch_size=plan.batch_size,
                                   eval_every=max(1, plan.eval_every // 5), store=store, log=log, study=plan.name)
    else:
        log(f"tuning the learning rate of {len(strategies)} strategies (lr-find: 3 sweeps of 100 steps each)")
        for s in strategies:
            lrs[s.label] = find_lr(wl, s, steps=plan.steps, batch_size=plan.batch_size, out=out, log=log)
    return lrs
