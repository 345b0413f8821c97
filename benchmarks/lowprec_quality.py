"""bfloat16 optimizer state against float32 state on charlm: the loss, and the bytes kept.

``state_dtype="bfloat16"`` (optim/lowprec.py) keeps moments in bfloat16 with
stochastic rounding. This compares, through ``descentlab.compare`` with the
workload's recipe (its schedule, lr and budget, 3 seeds, the same batches per
seed), adamw and lion with float32 state against the same with bfloat16 state,
and measures the optimizer state per parameter on charlm's model after one step.

    .venv/bin/python benchmarks/lowprec_quality.py                 # ~10 min on 2 cores
    .venv/bin/python benchmarks/lowprec_quality.py --steps 500 --seeds 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import descentlab
from descentlab import optim, workloads

OPTIMIZERS = ("adamw", "lion")


def state_bytes_per_param(name: str, **kw) -> float:
    wl = workloads.load("charlm")
    torch.manual_seed(0)
    model = wl.make_model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.create(name, params, lr=1e-3, **kw)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    total = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                if isinstance(v, torch.Tensor) and v.ndim > 0)
    return total / sum(p.numel() for p in params)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="runs/bench-lowprec")
    args = p.parse_args(argv)

    strategies = []
    for name in OPTIMIZERS:
        strategies += [{"name": f"{name} float32", "optimizer": name},
                       {"name": f"{name} bfloat16", "optimizer": name, "opt": {"state_dtype": "bfloat16"}}]
    start = time.perf_counter()
    result = descentlab.compare("charlm", strategies, steps=args.steps, seeds=args.seeds, jobs=args.jobs,
                                overwrite=True, progress=False, out=Path(args.out),
                                log=lambda m: print(m, file=sys.stderr))
    by: dict[str, list[dict]] = {}
    for row in result.rows:
        by.setdefault(row["strategy"], []).append(row)

    def finite(values):
        return [float(v) for v in values if v not in (None, "") and math.isfinite(float(v))]

    print("| strategy | state B/param | final val bpc (mean ± sd) | final test bpc (mean ± sd) | per seed (val) |")
    print("|---|---|---|---|---|")
    for name in OPTIMIZERS:
        for dtype in ("float32", "bfloat16"):
            label = f"{name} {dtype}"
            rows = sorted(by.get(label, []), key=lambda r: int(r["seed"]))
            val = finite(r["final_metric"] for r in rows)
            test = finite(r["test_final_metric"] for r in rows)
            sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
            kw = {"state_dtype": "bfloat16"} if dtype == "bfloat16" else {}
            print(f"| {label} | {state_bytes_per_param(name, **kw):.1f} | "
                  f"{statistics.fmean(val):.4f} ± {sd(val):.4f} | {statistics.fmean(test):.4f} ± {sd(test):.4f} | "
                  f"{', '.join(f'{v:.4f}' for v in val)} |")
    print(f"\n{len(result.rows)} runs in {time.perf_counter() - start:.0f} s wall; report {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
