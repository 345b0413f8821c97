"""One training run in this process, as ``descentlab train`` does it.

``run_training(config)`` resolves the recipe (the workload's defaults, then
the configuration), trains, and — with ``config.out`` — writes::

    DIR/config.json        the resolved configuration (what --resume continues)
    DIR/summary.json       workload, optimizer, schedule, seed, steps, wall_seconds,
                           train_seconds, final.* and best.* validation/test metrics, versions
                           (after --resume the times count the work kept from before the
                           interruption too: Trainer.wall_seconds)
    DIR/metrics.csv        every logged row (training loss, lr, evaluations, ...)
    DIR/checkpoints/       step-*.pt and best.pt (weights_only-loadable)
    DIR/runs.sqlite        the run store

Everything is validated (workload, optimizer, schedule, values) before the
first file is written, so bad input leaves nothing behind that could break a
later ``--resume``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import torch

from .. import optim, schedules, workloads
from ..errors import UsageError
from ..train.callbacks import Callback, CsvLogger, Diagnostics, EarlyStopping, ProgressBar, SameStart
from ..train.trainer import NonFiniteLossError, Trainer
from .build import LR_RECIPE, build, initial_lr, trainer_options
from .config import TrainConfig
from .lock import hold


class _FinalEvaluation(Callback):
    """Evaluates the test set on the final weights, before any best-weights restore."""

    def __init__(self, test: Any):
        self.test = test
        self.results: dict[str, float] = {}

    def on_fit_end(self, trainer: Trainer) -> None:
        self.results = trainer.evaluate(self.test)


def resolve(config: TrainConfig) -> dict[str, Any]:
    """The full recipe of a run: the workload's defaults overridden by ``config``."""
    wl = workloads.load(config.workload, seed=config.seed, data_dir=config.data_dir)
    recipe = wl.recipe
    name = optim.canonical(config.optimizer or recipe["optimizer"])
    same = name == optim.canonical(recipe["optimizer"])
    hparams = dict(recipe["optimizer_kwargs"]) if same else {}
    if config.lr is None and same and recipe["lr"] is not None:
        hparams["lr"], lr_source = recipe["lr"], LR_RECIPE
    else:
        hparams["lr"], lr_source = initial_lr(wl, name, config.lr)
    weight_decay = config.weight_decay if config.weight_decay is not None else (recipe["weight_decay"] if same else None)
    if weight_decay:
        hparams["weight_decay"] = weight_decay
    if config.l1:
        hparams["l1"] = config.l1
    hparams.update(config.opt)

    schedule = config.schedule if config.schedule is not None else recipe["schedule"]
    if schedule is not None:
        schedule = schedules.canonical(schedule)
    sched_kw = dict(recipe["schedule_kwargs"]) if schedule == recipe["schedule"] else {}

    batch_size = config.batch_size if config.batch_size is not None else recipe["batch_size"]
    epochs, steps = config.epochs, config.steps
    if epochs is None and steps is None:
        epochs, steps = recipe["epochs"], recipe["steps"]
    n_train = wl.num_examples("train")
    per_epoch = workloads.recipes.steps_per_epoch(n_train, batch_size)
    total = min(steps or math.inf, (epochs or math.inf) * per_epoch)
    sched_kw = _fit_phases(sched_kw, recipe, per_epoch, total)
    sched_kw.update(config.sched)
    if schedule is not None:  # e.g. cosine's total_steps: the run's length
        sched_kw = schedules.budget_defaults(schedule, total, sched_kw)
    eval_every = config.eval_every or (max(1, int(total) // 20) if steps is not None else None)
    return {
        "workload": wl,
        "optimizer": name,
        "optimizer_source": optim.origin(name),
        "lr_source": lr_source,
        "hparams": hparams,
        "schedule": schedule,
        "schedule_kwargs": sched_kw,
        "schedule_source": schedules.origin(schedule) if schedule is not None else None,
        "batch_size": batch_size,
        "epochs": epochs,
        "steps": steps,
        "total_steps": int(total),
        "eval_every": eval_every,
    }


#: schedule settings that are lengths of phases of the run (scaled with the budget)
PHASES = ("warmup_steps", "stable_steps", "decay_steps")


def _fit_phases(sched_kw: dict[str, Any], recipe: dict[str, Any], per_epoch: int, total: float) -> dict[str, Any]:
    """Stretch the recipe's phase lengths (e.g. WSD's stable and decay steps) to
    another budget, so ``--steps N`` keeps the recipe's shape over N steps."""
    planned = recipe["steps"] or (recipe["epochs"] or 0) * per_epoch
    if not planned or not math.isfinite(total) or total == planned:
        return sched_kw
    out = dict(sched_kw)
    for key in PHASES:
        if isinstance(out.get(key), int):
            # a decay takes at least one step (the schedule's own minimum): `--steps 4`
            # on a 4000-step recipe decays over 1 step instead of failing on decay_steps=0
            least = 1 if key == "decay_steps" and out[key] >= 1 else 0
            out[key] = max(least, round(out[key] * total / planned))
    return out


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


#: settings of how a run is run, not of what it computes: they may change on --resume
#: (checkpoints are in the one-process format whatever the strategy; DiLoCo's
#: settings change the computation and stay)
HOW = ("resume", "quiet", "out", "device", "nproc", "tensorboard", "strategy", "comm_hook", "max_restarts",
       "nnodes", "rdzv_endpoint")


def _check_resume(config: TrainConfig, out: Path) -> None:
    saved_path = out / "config.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    for key, value in config.to_dict().items():
        if key in HOW or value in (None, {}, False):
            continue
        if saved.get(key) != value and not (isinstance(value, tuple) and list(value) == saved.get(key)):
            raise UsageError(
                f"--resume continues the run saved in {str(out)!r}: {key}={value!r} differs from the saved "
                f"{key}={saved.get(key)!r}; drop the flag or use another --out"
            )


def resumed_config(config: TrainConfig, *, log=print) -> TrainConfig:
    """With ``resume``: the configuration saved in ``out`` (checked against ``config``)."""
    out = Path(config.out) if config.out else None
    if config.resume and out is not None:
        if (out / "config.json").exists():
            saved = json.loads((out / "config.json").read_text())
            _check_resume(config, out)
            # How to run (device, processes) may change on resume; what to compute may not.
            keep = {k: getattr(config, k) for k in HOW if k != "resume"}
            merged = {**saved, "resume": True, **keep}
            config = TrainConfig(**merged)
        else:
            log(f"note: nothing to resume in {out}; starting a new run")
    return config


def run_training(config: TrainConfig, *, log=print, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train as configured; return the summary (also written to ``out``).

    ``callbacks``: extra Trainer callbacks (e.g. ``tune``'s pruning callback), run
    after the built-in ones.

    With ``config.nproc > 1`` this runs in every process of a data-parallel
    group (:func:`descentlab.experiment.train` starts one, see
    :mod:`descentlab.experiment.parallel`): only rank 0 writes files or logs.
    """
    distributed = config.nproc > 1
    if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise UsageError(f"nproc={config.nproc} needs a process group: use descentlab.experiment.train(config)")
    writes = not distributed or torch.distributed.get_rank() == 0
    out = Path(config.out) if config.out else None
    config = resumed_config(config, log=log if writes else lambda msg: None)
    plan = resolve(config)
    wl = plan["workload"]

    diloco = {"sync_every": config.sync_every, "outer_lr": config.outer_lr, "outer_momentum": config.outer_momentum}
    model, optimizer, scheduler = build(wl, plan["optimizer"], plan["hparams"], plan["schedule"],
                                        plan["schedule_kwargs"], seed=config.seed, total_steps=plan["total_steps"],
                                        strategy=config.strategy, diloco=diloco,
                                        sync_batchnorm=config.sync_batchnorm)

    extra_callbacks = list(callbacks)
    final = _FinalEvaluation(wl.test)
    callbacks: list[Callback] = [final]
    if config.early_stopping:
        callbacks.append(EarlyStopping(monitor=f"val_{wl.metric}", patience=config.early_stopping, mode=wl.metric_mode))
    callbacks.append(Diagnostics(every=max(1, plan["total_steps"] // 50)))
    if out is not None and writes:
        callbacks.append(CsvLogger(out / "metrics.csv"))
    if config.tensorboard and writes:
        from ..train.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(config.tensorboard))
    callbacks.append(ProgressBar(enabled=False if config.quiet or not writes else None))
    callbacks.extend(extra_callbacks)
    if distributed:  # last, so that checkpoints still resume in one process
        callbacks.append(SameStart())

    trainer = Trainer(
        model,
        optimizer,
        wl.loss_fn,
        scheduler=scheduler,
        callbacks=callbacks,
        batch_size=plan["batch_size"],
        clip={"norm": config.clip_norm} if config.clip_norm else None,
        precision=config.precision,
        device=config.device,
        seed=config.seed,
        **trainer_options(wl),
        eval_every=plan["eval_every"],
        checkpoint_dir=str(out / "checkpoints") if out is not None else None,
        checkpoint_every=config.checkpoint_every or (max(1, plan["total_steps"] // 10) if out else None),
        resume=config.resume and out is not None,
        distributed=distributed,
        comm_hook=config.comm_hook if distributed else None,
    )

    record = {k: v for k, v in plan.items() if k != "workload"}
    resolved = {**config.to_dict(), "resolved": record}
    if out is None or not writes:
        return _fit(config, plan, trainer, final, None, None)
    with hold(out):  # everything is valid: now the output folder may be written, by this process alone
        _write_json(out / "config.json", config.to_dict())
        from ..store import RunStore  # sqlalchemy: imported by the runs that write a store, not by `import descentlab`

        store = RunStore(out / "runs.sqlite")
        run_id = (config.resume and store.find_running("train")) or store.start("train", resolved)
        return _fit(config, plan, trainer, final, store, run_id)


def _fit(config: TrainConfig, plan: dict[str, Any], trainer: Trainer, final: _FinalEvaluation,
         store: Any, run_id: int | None) -> dict[str, Any]:
    """Train, then write summary.json, metrics.csv and the run store's record (with a store)."""
    wl, out = plan["workload"], Path(config.out) if config.out else None
    status, error = "finished", None
    try:
        trainer.fit(wl.train, wl.val, epochs=plan["epochs"], max_steps=plan["steps"])
    except NonFiniteLossError as exc:
        status, error = "diverged", str(exc)
    wall = trainer.wall_seconds  # with the time before an interruption: Trainer.wall_seconds

    summary = _summary(config, plan, trainer, final.results, wall, status, error)
    if store is not None:
        _write_json(out / "summary.json", summary)
        trainer.history.to_csv(out / "metrics.csv")
        store.finish(run_id, trainer.history.rows, summary, status=status)
    if error:
        raise NonFiniteLossError(error)
    return summary


def _summary(config, plan, trainer, final_test, wall, status, error) -> dict[str, Any]:
    wl = plan["workload"]
    history = trainer.history
    last_eval = history.evaluations()[-1] if history.evaluations() else {}
    final = {k: v for k, v in last_eval.items() if k.startswith("val_")}
    final.update({f"test_{k}": v for k, v in final_test.items()})
    best: dict[str, Any] = {"step": trainer.best.step, f"val_{wl.metric}": trainer.best.value}
    if trainer.best.weights is not None:
        current = {k: v.detach().clone() for k, v in trainer.model_state().items()}
        trainer.restore_best()
        best.update({f"test_{k}": v for k, v in trainer.evaluate(wl.test).items()})
        trainer.load_model_state(current)
    return {
        "workload": wl.name,
        "optimizer": plan["optimizer"],
        "optimizer_source": plan["optimizer_source"],
        "lr_source": plan["lr_source"],
        "hparams": plan["hparams"],
        "schedule": plan["schedule"],
        "schedule_kwargs": plan["schedule_kwargs"],
        "schedule_source": plan["schedule_source"],
        "batch_size": plan["batch_size"],
        "seed": config.seed,
        "nproc": config.nproc,
        "strategy": config.strategy if config.nproc > 1 or config.strategy == "diloco" else None,
        "steps": trainer.step,
        "epochs_completed": trainer.epoch,
        "stop_reason": trainer.stop_reason if status == "finished" else status,
        "status": status,
        "error": error,
        "metric": wl.metric,
        "wall_seconds": wall,
        "train_seconds": trainer.train_seconds,
        "final": final,
        "best": best,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from ..store import versions

    return versions()
