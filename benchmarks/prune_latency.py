"""CPU latency of pruned models beside the dense one, from their model files.

    .venv/bin/python benchmarks/prune_latency.py DIR [DIR ...] [--runs 1000]

Each DIR is a ``descentlab prune`` output folder (``dense.pt``, ``finetuned-00.pt``: the
control with the dense architecture, and the ``pruned-NN.pt`` files). The models are
loaded here with ``descentlab.compress.load_model`` (weights_only, architecture rebuilt)
and timed in this one process, one thread, interleaved with each round starting at the
next model (``descentlab.compress.measure.latency``), at batch 1 and at batch 100 of
the workload's training inputs. Prints p50/p95 and the ratio to the dense model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    from descentlab import workloads
    from descentlab.compress import load_model
    from descentlab.compress.measure import latency

    for d in map(Path, args.dirs):
        summary = json.loads((d / "summary.json").read_text())
        x = workloads.load(summary["workload"]).train[0][: args.batch]
        files = ["dense.pt", "finetuned-00.pt"] + sorted(f.name for f in d.glob("pruned-*.pt"))
        models = {f.removesuffix(".pt"): load_model(d / f) for f in files if (d / f).exists()}
        params = {k: sum(q.numel() for q in m.parameters()) for k, m in models.items()}
        print(f"\n{d.name} ({summary['workload']}, {'structured' if summary['structured'] else 'unstructured'}), "
              f"{args.runs} interleaved runs per model, 1 thread")
        print("| model | parameters | p50 batch 1 (ms) | p95 | / dense | p50 batch "
              f"{args.batch} (ms) | p95 | / dense |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        one = latency(models, x[:1], runs=args.runs)
        many = latency(models, x, runs=args.runs)
        for k in models:
            print(f"| {k} | {params[k]:,} | {one[k]['p50']:.4f} | {one[k]['p95']:.4f} | "
                  f"{one[k]['p50'] / one['dense']['p50']:.3f} | {many[k]['p50']:.4f} | {many[k]['p95']:.4f} | "
                  f"{many[k]['p50'] / many['dense']['p50']:.3f} |")


if __name__ == "__main__":
    main()
