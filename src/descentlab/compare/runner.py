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

import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


from .. import workloads
from ..errors import UsageError
from ..experiment.build import build, trainer_options
from ..experiment.lock import hold
from ..store import RunStore
from ..train.callbacks import Callback, Diagnostics
from ..train.trainer import NonFiniteLossError, Trainer
from .strategy import Strategy, coerce

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
               "wall_seconds", "status", "optimizer", "lr", "schedule", "test_final_metric")


def time_to_target(rows: Sequence[dict[str, Any]], key: str, target: float | None, mode: str) -> tuple[int | None, float | None]:
    """Steps and training seconds at the first evaluation whose ``key`` reaches ``target``."""
    if target is None:
        return None, None
    for row in rows:
        value = row.get(key)
        if isinstance(value, float) and math.isfinite(value) and (value >= target if mode == "max" else value <= target):
            return row["step"], row["seconds"]
    return None, None


class _Progress(Callback):
    """Per-run bar and an ETA for the whole comparison (a line per run when not a terminal)."""

    def __init__(self, total_runs: int, steps: int, enabled: bool, log: Callable[[str], None]):
        self.total_runs, self.steps, self.log = total_runs, steps, log
        self.enabled = enabled and sys.stderr.isatty()
        self.done_runs, self.started = 0, time.perf_counter()
        self.bar = None

    def begin(self, label: str, seed: int) -> None:
        eta = self.eta()
        head = f"[{self.done_runs + 1}/{self.total_runs}] {label} seed {seed}"
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.steps, desc=f"{head} (ETA all {eta})", leave=False, file=sys.stderr, dynamic_ncols=True)
        else:
            self.log(f"{head}: training {self.steps} steps; ETA for the comparison {eta}")

    def eta(self) -> str:
        if self.done_runs == 0:
            return "unknown"
        per_run = (time.perf_counter() - self.started) / self.done_runs
        left = per_run * (self.total_runs - self.done_runs)
        return f"{int(left // 60)}m{int(left % 60):02d}s"

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.bar is not None and trainer.step % 20 == 0:
            self.bar.update(20)
            self.bar.set_postfix(loss=f"{trainer.last_loss:.3g}", refresh=False)

    def end(self, label: str, summary: dict[str, Any]) -> None:
        self.done_runs += 1
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        best = summary.get("best_metric")
        what = "diverged" if summary["status"] == "diverged" else f"best {best:.4g}"
        self.log(f"    {label}: {what} in {summary['wall_seconds']:.1f} s")


def _hparams(strategy: Strategy, wl: workloads.Workload, lr: float | None = None) -> dict[str, Any]:
    return {**strategy.hparams, "lr": lr if lr is not None else (strategy.lr if strategy.lr is not None else wl.default_lr(strategy.optimizer))}


def _build(wl, strategy: Strategy, seed: int, steps: int, lr: float | None = None):
    return build(wl, strategy.optimizer, _hparams(strategy, wl, lr), strategy.schedule, strategy.schedule_kwargs,
                 seed=seed, total_steps=steps, groups=strategy.groups)


def validate(wl, strategies: Sequence[Strategy], steps: int) -> None:
    """Build every strategy once, so a bad setting is reported before anything runs."""
    for s in strategies:
        try:
            _build(wl, s, 0, steps)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"strategy {s.label!r}: {exc}") from None


def _trainer(wl, strategy: Strategy, seed: int, steps: int, *, batch_size, eval_every: int | None,
             lr: float | None = None, callbacks: Sequence[Callback] = (), device: str = "auto") -> Trainer:
    model, optimizer, scheduler = _build(wl, strategy, seed, steps, lr)
    return Trainer(
        model, optimizer, wl.loss_fn, scheduler=scheduler, seed=seed, batch_size=batch_size, device=device,
        clip={"norm": strategy.clip_norm} if strategy.clip_norm else None, **trainer_options(wl),
        eval_every=eval_every, callbacks=[Diagnostics(every=max(1, steps // 40)), *callbacks],
    )


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
              lr: float | None = None, callbacks: Sequence[Callback] = (), device: str = "auto") -> tuple[dict, list[dict]]:
    """One run; returns (summary, history rows)."""
    key = f"val_{wl.metric}"
    trainer = _trainer(wl, strategy, seed, steps, batch_size=batch_size, eval_every=eval_every, lr=lr,
                       callbacks=callbacks, device=device)
    optimizer = trainer.optimizer
    status, error = "finished", None
    start = time.perf_counter()
    try:
        trainer.fit(wl.train, wl.val, max_steps=steps)
    except NonFiniteLossError as exc:
        status, error = "diverged", str(exc)
    wall = time.perf_counter() - start
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


def tune_lr(wl, strategy: Strategy, *, steps: int, batch_size, eval_every: int, store: RunStore, log) -> float:
    """The best lr of the sweep default × SWEEP, by best validation metric (seed 0)."""
    base = _hparams(strategy, wl)["lr"]
    best_lr, best_value = base, None
    for factor in SWEEP:
        lr = base * factor
        summary, rows = train_one(wl, strategy, 0, steps=steps, batch_size=batch_size, eval_every=eval_every,
                                  target=None, lr=lr)
        run_id = store.start(f"{strategy.label}/lr{lr:.3g}", {**strategy.to_dict(), "lr": lr, "seed": 0}, group="tune")
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


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if value == math.inf else repr(value)
    return str(value)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in CSV_COLUMNS])
    os.replace(tmp, path)


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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the comparison; write summary.csv, runs.sqlite, the plots and report.html to ``out``.

    ``workload`` is a name or ``file.py:FUNC`` reference, a Workload, or a
    factory; ``strategies`` are Strategy objects, optimizer names or strategy
    dicts (as in the strategies file); ``schedule``/``schedule_kwargs`` apply
    to every strategy that sets no schedule of its own. ``callbacks(label,
    seed)`` gives extra Trainer callbacks for each timed run (TensorBoard, say).
    """
    strategies = coerce(strategies, schedule, schedule_kwargs)
    if not strategies:
        raise UsageError("no strategies to compare: give --optimizers or --strategies")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"invalid seeds={seeds!r}: expected an integer >= 1")
    for name, value in (("steps", steps), ("epochs", epochs), ("eval_every", eval_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"invalid {name}={value!r}: expected an integer >= 1")
    wl = workloads.resolve(workload, seed=0, data_dir=data_dir)
    builtin = isinstance(workload, str) and workload.strip().lower().replace("_", "-") in workloads.available()
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
    validate(wl, strategies, steps)
    mode = tune_mode(tune)

    out = Path(out)
    with hold(out):  # one writer per folder: a second comparison here fails at once
        if (out / "runs.sqlite").exists():
            if not overwrite:
                raise UsageError(f"{str(out)!r} already holds a comparison; pass --overwrite or another --out")
            for name in ("runs.sqlite", "summary.csv", "report.html"):
                (out / name).unlink(missing_ok=True)
            for png in out.glob("*.png"):
                png.unlink()
        out.mkdir(parents=True, exist_ok=True)
        store = RunStore(out / "runs.sqlite")

        # One-time costs (kernels, first calls) are paid here, before any timed run.
        warm_up(wl, strategies, steps=steps, batch_size=batch_size, device=device, log=log)

        lrs: dict[str, float | None] = {s.label: None for s in strategies}
        if mode == "sweep":
            log(f"tuning the learning rate of {len(strategies)} strategies ({len(SWEEP)} × {max(1, steps // 5)} steps each)")
            for s in strategies:
                lrs[s.label] = tune_lr(wl, s, steps=max(1, steps // 5), batch_size=batch_size,
                                       eval_every=max(1, eval_every // 5), store=store, log=log)
        elif mode == "lr-find":
            log(f"tuning the learning rate of {len(strategies)} strategies (lr-find: 3 sweeps of 100 steps each)")
            for s in strategies:
                lrs[s.label] = find_lr(wl, s, steps=steps, batch_size=batch_size, out=out, log=log)

        log(f"comparing {len(strategies)} strategies × {seeds} seed(s) on {wl.name}: {steps} steps each, "
            f"batch {batch_size}" + (f", target {wl.metric} {target:g}" if target is not None else ""))
        meter = _Progress(len(strategies) * seeds, steps, progress, log)
        csv_rows = []
        for seed in range(seeds):
            for s in strategies:
                config = {
                    **s.to_dict(), "strategy": s.label, "hparams": _hparams(s, wl, lrs[s.label]), "seed": seed,
                    "workload": wl.name, "workload_ref": workload if isinstance(workload, str) else None,
                    "metric": wl.metric, "metric_mode": wl.metric_mode, "target": target,
                    "steps": steps, "batch_size": batch_size, "eval_every": eval_every, "tuned": mode or False,
                }
                run_id = store.start(f"{s.label}/seed{seed}", config, group=GROUP)
                meter.begin(s.label, seed)
                summary, rows = train_one(wl, s, seed, steps=steps, batch_size=batch_size, eval_every=eval_every,
                                          target=target, lr=lrs[s.label], device=device,
                                          callbacks=[meter, *(callbacks(s.label, seed) if callbacks else ())])
                store.finish(run_id, rows, summary, status=summary["status"])
                meter.end(s.label, summary)
                csv_rows.append({
                    **summary, "strategy": s.label, "seed": seed, "optimizer": s.optimizer, "schedule": s.schedule,
                    "steps_to_target": summary["steps_to_target"] if summary["steps_to_target"] is not None or target is None else math.inf,
                    "seconds_to_target": summary["seconds_to_target"] if summary["seconds_to_target"] is not None or target is None else math.inf,
                })
        write_csv(out / "summary.csv", csv_rows)
        from ..report.html import render

        report = render(out)
        return {"out": str(out), "report": str(report), "rows": csv_rows}

