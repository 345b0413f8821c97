"""pytorch-optimizer's modern optimizers against descentlab's adamw and muon, through `compare`.

Every strategy is an optimizer reference (``pytorch_optimizer:ADOPT`` ...) or a registered
name, compared as a user would compare them: ``descentlab.compare(..., tune_lr=True)`` (each
lr tuned by the range test first, the same budget for every strategy), 3 seeds, the same WSD
schedule for all, one worker per core. Per-step cost is each run's training seconds over
its steps (evaluation excluded), median over the seeds, and relative to adamw's in the
same comparison.

    .venv/bin/python benchmarks/foreign_optimizers.py                 # both workloads, 3 seeds
    .venv/bin/python benchmarks/foreign_optimizers.py --workloads mnist1d-cnn --seeds 1
    .venv/bin/python benchmarks/foreign_optimizers.py --native        # descentlab's own (issue 33)

``--native`` compares descentlab's own versions (ademamix, adopt, mars, soap, shampoo,
kron, normuon; issue 33) with adamw and muon the same way, kron included on both
workloads.

Kron runs on mnist1d-cnn only: a probe measured 118 ms per step there against 1.7 ms for
adamw (its preconditioners are updated at every step early on), which on charlm's
transformer would take the comparison past an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import descentlab

MODERN = ["pytorch_optimizer:ADOPT", "pytorch_optimizer:AdEMAMix", "pytorch_optimizer:SOAP",
          "pytorch_optimizer:MARS"]
OURS = ["adamw", "muon"]
BUDGETS = {"mnist1d-cnn": 2000, "charlm": 500}
ONLY = {"pytorch_optimizer:Kron": ("mnist1d-cnn",)}


NATIVE = ["ademamix", "adopt", "mars", "soap", "shampoo", "kron", "normuon"]


def strategies(workload: str, native: bool = False) -> list[str]:
    if native:
        return [*NATIVE, *OURS]
    extra = [name for name, where in ONLY.items() if workload in where]
    return [*MODERN, *extra, *OURS]


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def _spread(values: list) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "never"
    reached = f" ({len(finite)}/{len(values)})" if len(finite) < len(values) else ""
    return f"{statistics.median(finite):.0f} [{min(finite):.0f}–{max(finite):.0f}]{reached}"


def table(workload: str, rows: list[dict]) -> str:
    by: dict[str, list[dict]] = {}
    for row in rows:
        by.setdefault(row["strategy"], []).append(row)
    per_step = {s: statistics.median(r["train_seconds"] / max(1, r["steps"]) for r in rs) for s, rs in by.items()}
    base = per_step.get("adamw")
    lines = ["| strategy | tuned lr | best val (mean ± sd) | final test (mean ± sd) | steps to target: median "
             "[min–max] | ms/step | vs adamw |", "|---|---|---|---|---|---|---|"]
    for s, rs in by.items():
        lines.append(f"| {s} | {rs[0]['lr']:.3g} | {_mean_sd([r['best_metric'] for r in rs])} | "
                     f"{_mean_sd([r['test_final_metric'] for r in rs])} | "
                     f"{_spread([r['steps_to_target'] for r in rs])} | {1000 * per_step[s]:.2f} | "
                     f"{per_step[s] / base:.2f}× |" if base else "")
    return f"{workload} ({BUDGETS[workload]} steps):\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(BUDGETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=None, help="default: runs/bench-foreign (runs/bench-native with --native)")
    p.add_argument("--native", action="store_true", help="descentlab's own modern optimizers (issue 33)")
    args = p.parse_args(argv)
    out = Path(args.out or ("runs/bench-native" if args.native else "runs/bench-foreign"))
    for workload in args.workloads.split(","):
        start = time.perf_counter()
        result = descentlab.compare(workload, strategies(workload, args.native), steps=BUDGETS[workload], seeds=args.seeds,
                                    schedule="wsd", tune_lr=True, jobs=args.jobs, overwrite=True, progress=False,
                                    out=out / workload, log=lambda m: print(m, file=sys.stderr))
        print(table(workload, result.rows))
        print(f"\n{len(result.rows)} runs in {time.perf_counter() - start:.0f} s wall; report {result.report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
