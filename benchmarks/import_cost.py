"""The fixed cost of ``import descentlab`` against ``import torch``, which every run and
every worker process pays (a benchmark of many short runs multiplies it).

    .venv/bin/python benchmarks/import_cost.py               # 15 alternating pairs
    .venv/bin/python benchmarks/import_cost.py --repeat 31

Each sample is a new interpreter (``python -c "import X"``), its wall time from start to
exit, the two commands alternating so that the machine's drift falls on both. The first
pair is discarded (it warms the file cache). Prints the median of each, the ratio of the
medians, and the ratio's range over the pairs (each pair's own ratio).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def once(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    once("torch"), once("descentlab")  # the file cache
    torch_s, ours = [], []
    for _ in range(args.repeat):
        torch_s.append(once("torch"))
        ours.append(once("descentlab"))
    ratios = sorted(b / a for a, b in zip(torch_s, ours))
    mt, md = statistics.median(torch_s), statistics.median(ours)
    print("| import | median s | vs torch |\n|---|---|---|")
    print(f"| torch | {mt:.3f} | 1.00 |")
    print(f"| descentlab | {md:.3f} | {md / mt:.2f} (pairs {ratios[0]:.2f}–{ratios[-1]:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
