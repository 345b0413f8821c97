"""The leaderboard of the small suite under both rulesets (BENCHMARKS.md, "Benchmark").

    .venv/bin/python benchmarks/benchmark_leaderboard.py [--ruleset self|external|both] [--jobs 2]

The 19 registered optimizers and pytorch-optimizer's ADOPT, AdEMAMix, SOAP and MARS (issue 23's;
Kron is left out: 50× adamw's cost per step, BENCHMARKS.md "pytorch-optimizer's modern
optimizers"), each with its defaults (self: the workload's default lr for a registered optimizer,
the class's own default for the others; 3× the budget; 3 seeds) and with the default search space
lr × [1/10, 10] (external: 5 quasi-random trials per workload and study, 2 studies, 1 seed).
Everything goes through ``descentlab.benchmark``, as a user would run it; prints a markdown table per
ruleset: score in seconds and in steps with their 95% intervals, the speedup against adamw, the
workloads counted, and the wall time of the whole command.
"""

from __future__ import annotations

import argparse
import time

import descentlab
from descentlab import optim

FOREIGN = ["pytorch_optimizer:ADOPT", "pytorch_optimizer:AdEMAMix", "pytorch_optimizer:SOAP",
           "pytorch_optimizer:MARS"]
SETTINGS = {"self": {"seeds": 3, "studies": 1},
            "external": {"seeds": 1, "studies": 2, "trials": 5}}


def table(result, wall: float) -> str:
    d = result.data
    lines = [f"{d['ruleset']} ruleset: {len(d['strategies'])} strategies × {len(d['workloads'])} workloads, "
             f"{d['runs']} runs, {wall / 60:.1f} min wall on 2 cores ({d['train_seconds'] / 60:.1f} min of training)",
             "", f"| # | strategy | score (seconds) [95%] | score (steps) [95%] | speedup vs adamw [95%] | counted |",
             "|---|---|---|---|---|---|"]
    for rank, s in enumerate(d["verdict"]["order"], 1):
        lo, hi = d["score_ci_seconds"][s]
        slo, shi = d["score_ci_steps"][s]
        plo, phi = d["speedup_ci"][s]
        counted = sum(t is not None for t in d["times"][s].values())
        mark = " ★" if s == d["verdict"]["leader"] else " =" if s in d["verdict"]["tied"] else ""
        lines.append(f"| {rank} | {s}{mark} | {d['scores_seconds'][s]:.3f} [{lo:.3f}, {hi:.3f}] | "
                     f"{d['scores_steps'][s]:.3f} [{slo:.3f}, {shi:.3f}] | {d['speedup'][s]:.2f}× "
                     f"[{plo:.2f}, {phi:.2f}] | {counted}/{len(d['workloads'])} |")
    lines += ["", f"Verdict: {d['verdict']['text']}."]
    if d["unreached"]:
        lines.append(f"No strategy reached: {', '.join(d['unreached'])}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ruleset", choices=["self", "external", "both"], default="both")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/leaderboard")
    args = ap.parse_args()
    strategies = [*optim.available(), *({"name": ref.split(":")[1], "optimizer": ref} for ref in FOREIGN)]
    for ruleset in (["self", "external"] if args.ruleset == "both" else [args.ruleset]):
        start = time.perf_counter()
        result = descentlab.benchmark("small", strategies, ruleset=ruleset, jobs=args.jobs,
                                      out=f"{args.out}-{ruleset}", log=lambda msg: None, **SETTINGS[ruleset])
        print(table(result, time.perf_counter() - start), flush=True)
        print(flush=True)


if __name__ == "__main__":
    main()
