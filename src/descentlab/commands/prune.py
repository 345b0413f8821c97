"""``descentlab prune``: a smaller model that keeps its accuracy, measured beside the dense one."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .train import WORKLOAD_HELP, add_optimizer_arguments, optimizer_settings

HELP = "prune a workload's model (weights, or whole channels with --structured) while fine-tuning; measure both"


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid sparsity {text!r}: expected a fraction in [0, 1), e.g. 0.8") from None


def _curve(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    return tuple(_fraction(t) for t in text.split(","))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..compress.measure import LATENCY_RUNS

    p.add_argument("--workload", help=WORKLOAD_HELP)
    p.add_argument("--sparsity", type=_fraction,
                   help="fraction in [0, 1) of the weights to zero, or with --structured of the channels to remove")
    p.add_argument("--structured", action="store_true",
                   help="remove whole channels and neurons (Torch-Pruning): a smaller, faster model")
    p.add_argument("--scope", choices=["global", "layer"], default="global",
                   help="unstructured: one magnitude threshold for the model (global, default) or per layer")
    p.add_argument("--seed", type=int, default=0, help="seed of the dense run and the fine-tuning (default 0)")
    p.add_argument("--steps", type=int, help="the dense model's training budget (default: the recipe's)")
    add_optimizer_arguments(p, "the dense training's and the fine-tuning's")
    p.add_argument("--finetune-steps", type=int, help="fine-tuning steps of each pruned model (default: the recipe's "
                   "budget)")
    p.add_argument("--curve", type=_curve, help="sparsities of the accuracy curve, comma-separated, or none "
                   "(default 0,0.5,0.7,0.8,0.9,0.95; structured 0,0.25,0.5,0.75)")
    p.add_argument("--distill", action="store_true", help="fine-tune with the dense model as teacher (prune, then distill)")
    p.add_argument("--latency-runs", type=int, default=LATENCY_RUNS,
                   help=f"timed calls per model and batch size (default {LATENCY_RUNS})")
    p.add_argument("--out", help="output folder (default prune-<workload>): summary.json, report.html, the model files")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn: the MNIST IDX files)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..compress.prune_run import prune

    if not args.workload:
        raise UsageError("no workload given: pass --workload (see `descentlab list workloads`)")
    if args.sparsity is None:
        raise UsageError("no sparsity given: pass --sparsity F, a fraction in [0, 1), e.g. 0.8")
    out = Path(args.out or f"prune-{Path(args.workload).name.replace(':', '-')}")
    result = prune(args.workload, args.sparsity, structured=args.structured, seed=args.seed, out=out,
                   scope=args.scope, steps=args.steps, finetune_steps=args.finetune_steps, curve=args.curve,
                   distill=args.distill, data_dir=args.data_dir, latency_runs=args.latency_runs,
                   **optimizer_settings(args))
    s = result.summary
    key = f"test_{s['metric']}"
    for name in ("dense", "pruned"):
        m = s[name]
        print(f"{name:>6}: {key} {m[key]:.4f}, {m['parameters']:,} parameters ({m['nonzero_parameters']:,} nonzero), "
              f"{m['bytes']:,} bytes, {m['flops']:,} FLOPs/sample, latency p50 {m['latency_ms_p50']:.3f} ms "
              f"(batch 1), {m['latency_ms_p50_batch']:.3f} ms (batch {s['batch_size']})")
    print(f"wrote {out}/summary.json, report.html")
    return 0
