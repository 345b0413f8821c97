"""Pruning mnist1d-cnn: accuracy against sparsity, and what the smaller model costs.

For each seed, ``descentlab.compress.prune`` trains the recipe's dense model,
then fine-tunes a copy for every sparsity of the curve while pruning it, and
measures dense and pruned models side by side (latency: interleaved, in this
process, one thread, ``--latency-runs`` calls per model and batch size).

    .venv/bin/python benchmarks/prune_quality.py                 # unstructured, 80 %, seeds 0-2
    .venv/bin/python benchmarks/prune_quality.py --structured --sparsity 0.5

Prints the curve (test accuracy per sparsity and seed, and the mean), the
dense/pruned table of seed 0, and writes every summary under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="mnist1d-cnn")
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--structured", action="store_true")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--curve", help="sparsities of the curve, comma-separated (default: prune's)")
    p.add_argument("--out", default="bench-prune")
    args = p.parse_args()
    torch.set_num_threads(1)
    from descentlab.compress import prune

    kind = "structured" if args.structured else "unstructured"
    summaries = []
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        out = Path(args.out) / f"{kind}-{round(args.sparsity * 100)}-seed{seed}"
        curve = None if args.curve is None else [float(c) for c in args.curve.split(",")]
        result = prune(args.workload, args.sparsity, structured=args.structured, seed=seed, out=out, curve=curve,
                       latency_runs=args.latency_runs, log=lambda msg: None)
        summaries.append(result.summary)
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)

    key = f"test_{summaries[0]['metric']}"
    points = [pt["sparsity"] for pt in summaries[0]["curve"]]
    print(f"\n{args.workload}, {kind} pruning: {key} against sparsity (dense = the recipe's model; "
          f"0 % = fine-tuned as long without pruning)")
    seeds = [s["seed"] for s in summaries]
    print("| sparsity | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | mean − dense |")
    print("|---:|" + "---:|" * (len(seeds) + 2))
    dense = [s["dense"][key] for s in summaries]
    print("| dense | " + " | ".join(f"{v:.3f}" for v in dense) + f" | {statistics.fmean(dense):.3f} | |")
    for i, sp in enumerate(points):
        vals = [s["curve"][i][key] for s in summaries]
        diffs = [v - d for v, d in zip(vals, dense)]
        print(f"| {sp:.0%} | " + " | ".join(f"{v:.3f}" for v in vals)
              + f" | {statistics.fmean(vals):.3f} | {100 * statistics.fmean(diffs):+.1f} pt "
              f"({100 * min(diffs):+.1f} to {100 * max(diffs):+.1f}) |")

    s0 = summaries[0]
    print(f"\nseed {s0['seed']}: dense and pruned at {args.sparsity:.0%}, latency over {args.latency_runs} interleaved "
          f"runs, batch 1 and batch {s0['batch_size']}")
    print("| | dense | pruned | pruned / dense |")
    print("|---|---:|---:|---:|")
    for k in (key, "parameters", "nonzero_parameters", "bytes", "flops", "latency_ms_p50", "latency_ms_p95",
              "latency_ms_p50_batch", "latency_ms_p95_batch"):
        d, q = s0["dense"][k], s0["pruned"][k]
        fmt = (lambda v: f"{v:.4f}") if isinstance(d, float) else (lambda v: f"{v:,}")
        print(f"| {k} | {fmt(d)} | {fmt(q)} | {q / d:.3f} |")
    for s in summaries[1:]:
        d, q = s["dense"], s["pruned"]
        print(f"seed {s['seed']}: latency p50 ratio batch 1 {q['latency_ms_p50'] / d['latency_ms_p50']:.3f}, "
              f"batch {s['batch_size']} {q['latency_ms_p50_batch'] / d['latency_ms_p50_batch']:.3f}; "
              f"parameters {q['parameters'] / d['parameters']:.3f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{kind}.json").write_text(json.dumps(summaries, indent=1, default=str))


if __name__ == "__main__":
    main()
