"""Which pruner should ``descentlab tune`` use by default? Measured, not assumed.

The same study — workload, search space, budget per trial, sampler seed — is run
once per pruner (Hyperband, asynchronous successive halving, the median rule,
none), one trial at a time on one torch thread. For each: the best validation
metric reached, the test metric of that best configuration (from its run), the
compute spent (the sum of the optimizer steps every trial ran, pruned trials
counting the steps they ran), and the wall time. A pruner earns its place by a
best value close to no pruning for a fraction of the steps.

    .venv/bin/python benchmarks/tune_pruners.py [--workload mnist1d-cnn] [--trials 20] [--steps 1000]
        [--pruners hyperband,halving,median,none] [--seed 0] [--out /tmp/tune-pruners]

Prints a Markdown table (the one in docs/tune.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from descentlab.tune.study import tune


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="mnist1d-cnn")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--pruners", default="hyperband,halving,median,none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/tune-pruners")
    args = p.parse_args()
    torch.set_num_threads(1)

    rows = []
    for pruner in args.pruners.split(","):
        out = Path(args.out) / pruner
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = tune(args.workload, trials=args.trials, steps=args.steps, seed=args.seed, pruner=pruner, out=out,
                      log=lambda line: None)
        wall = time.perf_counter() - start
        spent = sum(r["steps"] or 0 for r in result["trials"] if r["state"] in ("COMPLETE", "PRUNED"))
        best = result["best_trial"]
        summary = json.loads((out / "trials" / f"{best:04d}" / "summary.json").read_text()) if best is not None else {}
        metric = result["metric"].removeprefix("val_")
        test = summary.get("final", {}).get(f"test_{metric}")
        rows.append((pruner, result["best_value"], test, result["n_complete"], result["n_pruned"], spent, wall))
        print(f"{pruner}: best {result['best_value']} (trial {best}), test {test}, {result['n_pruned']} pruned, "
              f"{spent} steps, {wall:.0f} s", flush=True)

    full = args.trials * args.steps
    print(f"\n{args.workload}, {args.trials} trials x {args.steps} steps, sampler seed {args.seed}, one thread\n")
    print(f"| pruner | best val {metric} | its test {metric} | complete | pruned | trial-steps (of {full}) | wall s |")
    print("|---|---|---|---|---|---|---|")
    for pruner, best, test, complete, pruned, spent, wall in rows:
        best_text = f"{best:.4f}" if best is not None else "—"
        test_text = f"{test:.4f}" if test is not None else "—"
        print(f"| {pruner} | {best_text} | {test_text} | {complete} | {pruned} | {spent} ({spent / full:.0%}) "
              f"| {wall:.0f} |")


if __name__ == "__main__":
    main()
