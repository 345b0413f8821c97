"""How good is lr-find's suggestion? Against a grid search, on every built-in workload.

For each workload and optimizer:

1. **Grid**: train through ``train`` (the workload's recipe, only the lr changed)
   at half-decade learning rates around the workload's default lr for the
   optimizer (default × 10^(k/2), k = -3..3, extended by one point while the
   best is at an edge), ``--grid-seeds`` seeds each. The grid-best lr has the
   best mean final validation metric (a diverged run is the worst).
2. **Range tests**: ``descentlab.tune.lr_find`` on the freshly initialised
   model of seeds 0..``--find-seeds``-1 (the same start as a training run of
   that seed), the workload's optimizer settings and batch size. Every rule of
   :mod:`descentlab.tune.rules` is computed on the *same* curves, so the rules
   differ only in how they read a curve.
3. **Hits**: a suggestion hits when it lies within 3x of the grid-best lr.
   Each rule's seed-0 suggestion is also trained through ``train`` and its
   final test metric is reported beside the grid-best's.

Every training run is cached under ``--out`` (one JSON file per run), so an
interrupted benchmark continues where it stopped and ``--phase find`` can be
rerun alone. mnist-cnn is left out (it needs MNIST files; none are shipped).
charlm's grid uses a shorter budget (``--charlm-steps``, default 500 of its
2000) and one seed: a full grid at 2.5 min a run is over an hour on one core.

    .venv/bin/python benchmarks/lr_find_quality.py [--workloads a,b] [--optimizers adam,momentum]
        [--grid-seeds 2] [--find-seeds 5] [--phase grid|find|all] [--out lr_find_quality]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

WORKLOADS = ("linreg", "diabetes", "digits-mlp", "digits-cnn", "mnist1d-logreg", "mnist1d-mlp", "mnist1d-cnn", "charlm")


def _lr_key(lr: float) -> str:
    return f"{lr:.3e}"


def half_decades(center: float, low: int = -3, high: int = 3) -> list[float]:
    return [float(f"{center * 10 ** (k / 2):.3g}") for k in range(low, high + 1)]


def train_once(out: Path, workload: str, optimizer: str, lr: float, seed: int, steps: int | None) -> dict:
    """One ``train`` run (cached): the summary's final/best metrics and status."""
    path = out / "runs" / workload / optimizer / f"lr{_lr_key(lr)}_seed{seed}{'' if steps is None else f'_steps{steps}'}.json"
    if path.exists():
        return json.loads(path.read_text())
    from descentlab.experiment.config import TrainConfig
    from descentlab.experiment.run import run_training
    from descentlab.train.trainer import NonFiniteLossError

    config = TrainConfig(workload=workload, optimizer=optimizer, lr=lr, seed=seed, steps=steps, quiet=True)
    start = time.perf_counter()
    try:
        summary = run_training(config, log=lambda msg: None)
        record = {"status": summary["status"], "final": summary["final"], "best": summary["best"],
                  "metric": summary["metric"], "steps": summary["steps"]}
    except NonFiniteLossError as exc:
        record = {"status": "diverged", "error": str(exc)}
    record.update(workload=workload, optimizer=optimizer, lr=lr, seed=seed, steps=steps,
                  seconds=time.perf_counter() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return record


def score(record: dict, metric: str, mode: str, split: str = "val") -> float:
    """The final metric of a run, worst possible when it diverged."""
    worst = -math.inf if mode == "max" else math.inf
    if record.get("status") != "finished":
        return worst
    value = record["final"].get(f"{split}_{metric}")
    return worst if value is None or not math.isfinite(value) else value


def grid(out: Path, workload: str, optimizer: str, seeds: int, steps: int | None, log) -> dict:
    """Train the half-decade grid (extended while the best is at an edge); return the grid-best."""
    from descentlab import workloads

    wl = workloads.load(workload, seed=0)
    metric, mode = wl.metric, wl.metric_mode
    better = max if mode == "max" else min
    lrs = half_decades(wl.default_lr(optimizer))
    results: dict[float, float] = {}
    while True:
        for lr in lrs:
            if lr in results:
                continue
            values = [score(train_once(out, workload, optimizer, lr, s, steps), metric, mode) for s in range(seeds)]
            results[lr] = statistics.fmean(values) if all(math.isfinite(v) for v in values) else (
                -math.inf if mode == "max" else math.inf)
            log(f"  grid {workload} {optimizer} lr={lr:.3g}: val_{metric} {results[lr]:.4f}")
        ordered = sorted(results)
        best = better(ordered, key=lambda lr: results[lr])
        if best == ordered[0] and len(ordered) < 11:
            lrs = [float(f"{ordered[0] / 10 ** 0.5:.3g}")]
        elif best == ordered[-1] and len(ordered) < 11:
            lrs = [float(f"{ordered[-1] * 10 ** 0.5:.3g}")]
        else:
            break
    test = statistics.fmean(score(train_once(out, workload, optimizer, best, s, steps), metric, mode, "test")
                            for s in range(seeds))
    return {"best_lr": best, "val": results[best], "test": test, "grid": {str(k): v for k, v in sorted(results.items())},
            "metric": metric, "mode": mode}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--optimizers", default="adam,momentum")
    p.add_argument("--grid-seeds", type=int, default=2)
    p.add_argument("--find-seeds", type=int, default=5)
    p.add_argument("--charlm-steps", type=int, default=500)
    p.add_argument("--phase", choices=("grid", "find", "all"), default="all")
    p.add_argument("--out", default="lr_find_quality")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    log = lambda msg: print(msg, flush=True)
    grids = {}
    for workload in args.workloads.split(","):
        steps = args.charlm_steps if workload == "charlm" else None
        seeds = 1 if workload == "charlm" else args.grid_seeds
        for optimizer in args.optimizers.split(","):
            grids[workload, optimizer] = grid(out, workload, optimizer, seeds, steps, log)
            log(f"{workload} {optimizer}: grid-best lr {grids[workload, optimizer]['best_lr']:.3g}")
    (out / "grids.json").write_text(json.dumps({f"{w}/{o}": g for (w, o), g in grids.items()}, indent=1))
    if args.phase == "grid":
        return 0
    return find_phase(args, out, grids, log)


def sweeps_of(out: Path, workload: str, optimizer: str, seed: int, steps: int | None, sweeps: int) -> dict:
    """lr_find on seed ``seed``'s fresh model (cached): every sweep's curve."""
    path = out / "find" / workload / optimizer / f"seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    from descentlab.experiment.build import build
    from descentlab.experiment.config import TrainConfig
    from descentlab.experiment.run import resolve
    from descentlab.tune import lr_find

    plan = resolve(TrainConfig(workload=workload, optimizer=optimizer, seed=seed, steps=steps))
    wl = plan["workload"]
    model, opt, _ = build(wl, plan["optimizer"], plan["hparams"], None, {}, seed=seed, total_steps=plan["total_steps"])
    start = time.perf_counter()
    result = lr_find(model, opt, wl.loss_fn, wl.train, batch_size=plan["batch_size"], seed=seed * 100,
                     sweeps=sweeps, target_key=wl.target_key, optimizer_name=plan["optimizer"])
    record = {"seconds": time.perf_counter() - start,
              "sweeps": [{k: run[k] for k in ("lrs", "losses", "raw_losses", "stop")} for run in result.sweeps]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def suggestions(record: dict, rule: str, combined: bool) -> float:
    """A rule's suggestion from the first sweep, or the geometric median over all sweeps."""
    from descentlab.tune import rules

    fn = rules.get(rule)
    values = [fn(s["lrs"], s["losses"], s["raw_losses"]) for s in (record["sweeps"] if combined else record["sweeps"][:1])]
    return rules.geometric_median(values)


SWEEP = (0.1, 0.3, 1.0, 3.0, 10.0)  # compare --tune-lr sweep: default x these, a fifth of the budget, seed 0


def short_sweep(out: Path, workload: str, optimizer: str, steps: int | None, g: dict) -> dict:
    """compare's ``--tune-lr sweep`` through ``train``: the best-by-validation lr of
    default x SWEEP trained for a fifth of the budget (seed 0), then trained in full."""
    from descentlab import workloads
    from descentlab.experiment.config import TrainConfig
    from descentlab.experiment.run import resolve

    wl = workloads.load(workload, seed=0)
    total = resolve(TrainConfig(workload=workload, optimizer=optimizer, steps=steps))["total_steps"]
    fifth = max(1, total // 5)
    worst = -math.inf if g["mode"] == "max" else math.inf
    better = max if g["mode"] == "max" else min
    tried = {}
    for factor in SWEEP:
        lr = float(f"{wl.default_lr(optimizer) * factor:.3g}")
        r = train_once(out, workload, optimizer, lr, 0, fifth)
        value = r.get("best", {}).get(f"val_{g['metric']}") if r.get("status") == "finished" else None
        tried[lr] = value if value is not None and math.isfinite(value) else worst
    best = better(tried, key=lambda lr: tried[lr])
    full = train_once(out, workload, optimizer, best, 0, steps)
    return {"lr": best, "test": score(full, g["metric"], g["mode"], "test"), "steps": fifth * len(SWEEP)}


def find_phase(args, out: Path, grids: dict, log) -> int:
    from descentlab.tune import rules

    variants = [(rule, False) for rule in rules.RULES] + [(rule, True) for rule in rules.RULES]
    label = lambda rule, combined: f"{rule}{' x3' if combined else ''}"
    hits = {label(*v): 0 for v in variants}
    cells = sweep_hits = find0_hits = 0
    rows = []
    for (workload, optimizer), g in grids.items():
        steps = args.charlm_steps if workload == "charlm" else None
        records = [sweeps_of(out, workload, optimizer, s, steps, 3) for s in range(args.find_seeds)]
        row = {"workload": workload, "optimizer": optimizer, "grid_best": g["best_lr"], "grid_test": g["test"],
               "metric": g["metric"], "rules": {}}
        for rule, combined in variants:
            sugg = [suggestions(r, rule, combined) for r in records]
            within = sum(1 for v in sugg if g["best_lr"] / 3 <= v <= g["best_lr"] * 3)
            # trained: each rule on one sweep, and the default rule's median of three
            train = not combined or rule == rules.DEFAULT_RULE
            trained = train_once(out, workload, optimizer, float(f"{sugg[0]:.3g}"), 0, steps) if train else {}
            row["rules"][label(rule, combined)] = {
                "suggestions": sugg, "hits": within, "seed0_lr": float(f"{sugg[0]:.3g}"),
                "seed0_test": score(trained, g["metric"], g["mode"], "test") if train else math.nan}
            hits[label(rule, combined)] += within
        row["sweep"] = short_sweep(out, workload, optimizer, steps, g)
        sweep_hits += g["best_lr"] / 3 <= row["sweep"]["lr"] <= g["best_lr"] * 3
        find0 = row["rules"][label(rules.DEFAULT_RULE, True)]["suggestions"][0]
        find0_hits += g["best_lr"] / 3 <= find0 <= g["best_lr"] * 3
        cells += len(records)
        rows.append(row)
        log(f"{workload} {optimizer}: grid-best {g['best_lr']:.3g} (test {g['test']:.4f}); " + ", ".join(
            f"{k} {v['hits']}/{len(records)} [{v['seed0_lr']:.2g}: {v['seed0_test']:.4f}]" for k, v in row["rules"].items()))
    (out / "quality.json").write_text(json.dumps({"rows": rows, "hits": hits, "cells": cells, "sweep_hits": sweep_hits,
                                                  "find_hits_seed0": find0_hits}, indent=1))
    print()
    print("| workload | optimizer | grid-best lr (test) | " + " | ".join(label(*v) for v in variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for row in rows:
        cells_md = [f"{r['hits']}/{args.find_seeds} · {r['seed0_lr']:.2g} ({r['seed0_test']:.3f})"
                    for r in row["rules"].values()]
        print(f"| {row['workload']} | {row['optimizer']} | {row['grid_best']:.3g} ({row['grid_test']:.3f}) | "
              + " | ".join(cells_md) + " |")
    print("| **within 3x, all** | | | " + " | ".join(f"**{hits[label(*v)]}/{cells}**" for v in variants) + " |")
    print()
    print(f"compare --tune-lr on seed 0: lr-find ({rules.DEFAULT_RULE} x3, 300 steps) vs the short sweep "
          "(5 lrs x a fifth of the budget)")
    print("| workload | optimizer | grid-best lr (test) | lr-find lr (test) | sweep lr (test) | sweep steps |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        f = row["rules"][label(rules.DEFAULT_RULE, True)]
        print(f"| {row['workload']} | {row['optimizer']} | {row['grid_best']:.3g} ({row['grid_test']:.3f}) | "
              f"{f['seed0_lr']:.3g} ({f['seed0_test']:.3f}) | {row['sweep']['lr']:.3g} ({row['sweep']['test']:.3f}) | "
              f"{row['sweep']['steps']} |")
    print(f"| **within 3x of the grid-best** | | | **{find0_hits}/{len(rows)}** | **{sweep_hits}/{len(rows)}** | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
