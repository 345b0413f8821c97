"""One run of one strategy on one workload: what the comparison, the benchmark and the lr
tuning all run. Build it for a seed (the same initialisation for every strategy of a
seed), warm it up untimed, train it within a step budget with checkpoints it resumes
from, and measure its time to a target; and where its lr came from.

Above :mod:`.build` (model, optimizer, schedule) and the Trainer; below ``compare`` and
``benchmark``, which call it and never each other (docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .. import workloads
from ..errors import UsageError
from ..train.callbacks import Callback, Diagnostics
from ..train.trainer import NonFiniteLossError, Trainer
from .build import LR_GIVEN, build, initial_lr, trainer_options
from .strategy import Strategy


def time_to_target(rows: Sequence[dict[str, Any]], key: str, target: float | None, mode: str) -> tuple[int | None, float | None]:
    """Steps and training seconds at the first evaluation whose ``key`` reaches ``target``."""
    if target is None:
        return None, None
    for row in rows:
        value = row.get(key)
        if isinstance(value, float) and math.isfinite(value) and (value >= target if mode == "max" else value <= target):
            return row["step"], row["seconds"]
    return None, None


def lr_and_source(strategy: Strategy, wl: workloads.Workload, lr: float | None = None,
                  tuned: str | None = None) -> tuple[float, str]:
    """A run's lr and where it came from: ``lr`` (tuned by ``tuned``), else the
    strategy's, else the workload's default (registered optimizers), else the
    class's own default (:func:`descentlab.experiment.build.initial_lr`)."""
    if lr is not None:
        return float(lr), f"tuned ({tuned})" if tuned else LR_GIVEN
    return initial_lr(wl, strategy.optimizer, strategy.lr)


def _hparams(strategy: Strategy, wl: workloads.Workload, lr: float | None = None) -> dict[str, Any]:
    return {**strategy.hparams, "lr": lr_and_source(strategy, wl, lr)[0]}


def _build(wl, strategy: Strategy, seed: int, steps: int, lr: float | None = None):
    return build(wl, strategy.optimizer, _hparams(strategy, wl, lr), strategy.schedule, strategy.schedule_kwargs,
                 seed=seed, total_steps=steps, groups=strategy.groups,
                 strategy="diloco" if strategy.diloco else "ddp", diloco=strategy.diloco)


def validate(wl, strategies: Sequence[Strategy], steps: int, tune: bool = False) -> None:
    """Build every strategy once, so a bad setting is reported before anything runs."""
    for s in strategies:
        try:
            _build(wl, s, 0, steps)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"strategy {s.label!r}: {exc}") from None
        if tune and not _has_lr(wl, s, steps):
            raise UsageError(f"strategy {s.label!r}: --tune-lr sweeps the param groups' lr, and optimizer "
                             f"{s.optimizer} keeps none in its param_groups")


def _has_lr(wl, strategy: Strategy, steps: int) -> bool:
    _, optimizer, _ = _build(wl, strategy, 0, steps)
    return all("lr" in g for g in optimizer.param_groups)


def _trainer(wl, strategy: Strategy, seed: int, steps: int, *, batch_size, eval_every: int | None,
             lr: float | None = None, callbacks: Sequence[Callback] = (), device: str = "auto",
             checkpoint_dir: str | None = None) -> Trainer:
    model, optimizer, scheduler = _build(wl, strategy, seed, steps, lr)
    return Trainer(
        model, optimizer, wl.loss_fn, scheduler=scheduler, seed=seed, batch_size=batch_size, device=device,
        clip={"norm": strategy.clip_norm} if strategy.clip_norm else None, **trainer_options(wl),
        eval_every=eval_every, callbacks=[Diagnostics(every=max(1, steps // 40)), *callbacks],
        checkpoint_dir=checkpoint_dir, checkpoint_every=max(1, steps // CHECKPOINTS) if checkpoint_dir else None,
        keep_checkpoints=1, resume=checkpoint_dir is not None,
    )


#: checkpoints per run when runs are resumable: an interrupted run loses at most a tenth of its steps
CHECKPOINTS = 10


WARMUP_STEPS = 2


def warm_up(wl, strategies: Sequence[Strategy], *, steps: int, batch_size, device: str = "auto",
            log: Callable[[str], None] = print) -> None:
    """Pay every one-time cost before any timed run: a few untimed steps of each
    strategy on a throwaway model (kernel builds and loads, first-call
    initialisation of its ops, DataLoader start-up), none of it recorded."""
    log(f"warming up {len(strategies)} strategies ({WARMUP_STEPS} untimed steps each: one-time costs are paid here)")
    for s in strategies:
        trainer = _trainer(wl, s, 0, steps, batch_size=batch_size, eval_every=None, device=device)
        try:
            trainer.fit(wl.train, None, max_steps=min(WARMUP_STEPS, steps))
        except NonFiniteLossError:
            pass  # a strategy that diverges at once is recorded as such by its real run


def train_one(wl, strategy: Strategy, seed: int, *, steps: int, batch_size, eval_every: int, target: float | None,
              lr: float | None = None, callbacks: Sequence[Callback] = (), device: str = "auto",
              checkpoint_dir: str | None = None) -> tuple[dict, list[dict]]:
    """One run; returns (summary, history rows). With ``checkpoint_dir`` it writes checkpoints
    there and continues from the newest one it finds (an interrupted run resumes exactly, and its
    ``wall_seconds``, ``train_seconds`` and ``seconds_to_target`` count the time before the
    interruption too: see :attr:`Trainer.wall_seconds`)."""
    key = f"val_{wl.metric}"
    trainer = _trainer(wl, strategy, seed, steps, batch_size=batch_size, eval_every=eval_every, lr=lr,
                       callbacks=callbacks, device=device, checkpoint_dir=checkpoint_dir)
    optimizer = trainer.optimizer
    status, error = "finished", None
    try:
        trainer.fit(wl.train, wl.val, max_steps=steps)
    except NonFiniteLossError as exc:
        status, error = "diverged", str(exc)
    wall = trainer.wall_seconds  # a resumed run's too: the checkpoint keeps the time before the interruption
    rows = trainer.history.rows
    steps_hit, seconds_hit = time_to_target(rows, key, target, wl.metric_mode)
    final = trainer.history.last(key) if status == "finished" else None
    test_final = trainer.evaluate(wl.test).get(wl.metric) if status == "finished" else None
    summary = {
        "status": status,
        "error": error,
        "final_metric": final,
        "best_metric": trainer.best.value if trainer.best.step is not None else None,
        "test_final_metric": test_final,
        "steps_to_target": steps_hit,
        "seconds_to_target": seconds_hit,
        "wall_seconds": wall,
        "train_seconds": trainer.train_seconds,
        "steps": trainer.step,
        "lr": float(optimizer.param_groups[0].get("initial_lr", _hparams(strategy, wl, lr)["lr"])),
    }
    return summary, rows
