"""Does a busy neighbour move the benchmark's verdict? The same benchmark run twice, once alone and
once beside a CPU-bound process, compared by Kendall's τ between the two rankings and the largest
score difference, on reference seconds (what scores) and on the raw seconds measured beside them.

    .venv/bin/python benchmarks/benchmark_load.py [--seeds 3] [--burners 1] [--workloads a,b] [--out DIR]

Each run is the default ``descentlab benchmark`` (the small suite, the 7 classic optimizers, the
self ruleset) with ``--seeds`` fixed, so both train the same runs; the second starts ``--burners``
processes that spin (``while True: pass``) for its whole length, one more process than the cores'
worth of workers. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from scipy.stats import kendalltau


def run(out: Path, seeds: int, burners: int, workloads: str | None) -> tuple[dict, float]:
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    start = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "descentlab", "benchmark", "--seeds", str(seeds), "--out", str(out),
                        "--overwrite", *(["--workloads", workloads] if workloads else [])],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        for p in spin:
            p.kill()
            p.wait()
    return json.loads((out / "benchmark.json").read_text()), time.perf_counter() - start


def compare(a: dict, b: dict, key: str) -> tuple[float, float]:
    names = sorted(a[key])
    tau = kendalltau([a[key][s] for s in names], [b[key][s] for s in names]).statistic
    return float(tau), max(abs(a[key][s] - b[key][s]) for s in names)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--burners", type=int, default=1)
    ap.add_argument("--out", default="runs/benchmark-load")
    ap.add_argument("--workloads", help="a subset of the small suite (default: all of it)")
    args = ap.parse_args()
    out = Path(args.out)
    alone, t_alone = run(out / "alone", args.seeds, 0, args.workloads)
    busy, t_busy = run(out / "busy", args.seeds, args.burners, args.workloads)
    same_steps = alone["steps"] == busy["steps"]
    print(f"wall: alone {t_alone:.0f} s, beside {args.burners} CPU-bound process(es) {t_busy:.0f} s "
          f"({t_busy / t_alone:.2f}x); steps to target identical in both: {same_steps}")
    print("| scores on | Kendall τ (alone vs busy) | largest score difference |")
    print("|---|---|---|")
    for key, what in (("scores_seconds", "reference seconds (what scores)"), ("scores_raw", "raw measured seconds"),
                      ("scores_steps", "steps")):
        tau, diff = compare(alone, busy, key)
        print(f"| {what} | {tau:.3f} | {diff:.3f} |")
    print("\n| strategy | score alone | score busy | raw alone | raw busy |")
    print("|---|---|---|---|---|")
    for s in alone["verdict"]["order"]:
        print(f"| {s} | {alone['scores_seconds'][s]:.3f} | {busy['scores_seconds'][s]:.3f} | "
              f"{alone['scores_raw'][s]:.3f} | {busy['scores_raw'][s]:.3f} |")
    print(f"\nverdict alone: {alone['verdict']['text']}\nverdict busy:  {busy['verdict']['text']}")


if __name__ == "__main__":
    main()
