"""Wall time of one comparison run with ``--jobs 1`` and with ``--jobs N``, side by side.

    .venv/bin/python benchmarks/compare_parallel.py                 # issue 16: --jobs 2 on mnist1d-cnn
    .venv/bin/python benchmarks/compare_parallel.py --demo          # make demo: 1 seed, --jobs 1 vs 3 seeds, --jobs N
    .venv/bin/python benchmarks/compare_parallel.py --seeds 2 --steps 1000 --repeat 3   # issue 24, item 7

Each variant is the ``descentlab compare`` command, started as a new process (imports,
the workers' start, the warm-up, the report: everything a user waits for), into an empty
folder, alternating the variants ``--repeat`` times in this one run (the machine's speed
drifts by ±10 % from run to run); the fused kernels are built before the first (a one-time
cost, paid by ``make install``). Prints a markdown table: the median wall seconds, the
ratio of the medians to the first variant's, and whether the metric columns of summary.csv are identical
to the first's for the runs both have (final_metric, best_metric, steps_to_target,
test_final_metric, status).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("strategy", "seed", "final_metric", "best_metric", "steps_to_target", "test_final_metric", "status")


def run(args: list[str], out: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "descentlab", "compare", *args, "--out", str(out), "--quiet"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"compare {' '.join(args)} failed:\n{done.stderr}")
    return wall


def columns(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "summary.csv") as f:
        return {(r["strategy"], r["seed"]): {k: r[k] for k in METRICS} for r in csv.DictReader(f)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true", help="the make-demo pair instead")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--workload", default="mnist1d-cnn")
    p.add_argument("--optimizers", default="sgd,momentum,adam,adamw")
    p.add_argument("--steps", type=int, help="default: the workload's recipe")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    subprocess.run([sys.executable, "-m", "descentlab.optim.fused"], check=True, capture_output=True)
    budget = ["--steps", str(a.steps)] if a.steps else []
    if a.demo:  # what `make demo` ran before issue 16, and what it runs now
        variants = [("1 seed, --jobs 1 (the demo before)", ["--seeds", "1", "--jobs", "1", *budget]),
                    (f"3 seeds, --jobs {a.jobs} (make demo now)", ["--seeds", "3", "--jobs", str(a.jobs), *budget])]
    else:
        base = ["--workload", a.workload, "--optimizers", a.optimizers, "--seeds", str(a.seeds), *budget]
        variants = [("--jobs 1", [*base, "--jobs", "1"]), (f"--jobs {a.jobs}", [*base, "--jobs", str(a.jobs)])]
    print(f"# {os.cpu_count()} cores; {' vs '.join(v[0] for v in variants)}", flush=True)
    walls: dict[str, list[float]] = {label: [] for label, _ in variants}
    cols: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeat):
            for i, (label, args) in enumerate(variants):
                out = Path(tmp) / f"{r}-{i}"
                walls[label].append(run(args, out))
                found = columns(out)
                assert cols.setdefault(label, found) == found, f"{label}: another repetition gave other numbers"
                print(f"  {label}: {walls[label][-1]:.1f} s", flush=True)
    first = variants[0][0]
    base = statistics.median(walls[first])
    print("\n| variant | runs | wall s (median) | each | ratio to the first | metric columns |\n|---|---:|---:|---|---:|---|")
    for label, _ in variants:
        shared = cols[label].keys() & cols[first].keys()
        same = all(cols[label][k] == cols[first][k] for k in shared)
        print(f"| {label} | {len(cols[label])} | {statistics.median(walls[label]):.1f} | "
              f"{', '.join(f'{w:.1f}' for w in walls[label])} | {statistics.median(walls[label]) / base:.2f} | "
              f"{'identical' if same else 'DIFFERENT'} ({len(shared)} shared) |")


if __name__ == "__main__":
    main()
