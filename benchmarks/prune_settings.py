"""The fine-tuning settings of ``descentlab prune``, measured: budget, pruning window,
first layer dense or not, distillation — at 80 % global unstructured sparsity.

    .venv/bin/python benchmarks/prune_settings.py [--seed 0] [--sparsity 0.8]

One dense model (the recipe), then each variant fine-tunes an independent copy of
it and of its optimizer state; prints test accuracy against the dense model.
"""

from __future__ import annotations

import argparse
import copy

import torch

VARIANTS = [  # (label, fine-tuning steps as a fraction of the recipe's, window, first layer dense, distill)
    ("1/4 budget, window 1/2", 0.25, 0.5, False, False),
    ("full budget, window 1/2", 1.0, 0.5, False, False),
    ("full budget, window 3/4 (the default)", 1.0, 0.75, False, False),
    ("full budget, window 3/4, first layer dense", 1.0, 0.75, True, False),
    ("full budget, window 3/4, first layer dense, distilled (--distill)", 1.0, 0.75, True, True),
    ("full budget, window 3/4, first layer dense, --scope layer", 1.0, 0.75, True, False),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="mnist1d-cnn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sparsity", type=float, default=0.8)
    args = p.parse_args()
    torch.set_num_threads(1)
    from descentlab.compress import GradualPruning, make_permanent, sparsity_of
    from descentlab.compress.distill import DistillationLoss, Distiller
    from descentlab.compress.fit import copy_run, evaluate, fit, plan_for, schedule_for, train_dense
    from descentlab.compress.magnitude import prunable

    plan = plan_for(args.workload, seed=args.seed)
    wl = plan["workload"]
    dense = train_dense(plan, seed=args.seed)
    base = evaluate(wl, dense.model)[wl.metric]
    print(f"{args.workload}, seed {args.seed}, {args.sparsity:.0%} global magnitude; dense test {wl.metric} {base:.3f}")
    print(f"| fine-tuning | test {wl.metric} | vs dense (points) |\n|---|---:|---:|")
    for label, share, window, keep_first, distill in VARIANTS:
        steps = max(1, int(plan["total_steps"] * share))
        ft_plan = plan_for(args.workload, seed=args.seed, steps=steps)
        model, opt = copy_run(dense, plan)
        layers = prunable(model)
        total = sum(m.weight.numel() for _, m in layers)
        first = layers[0][1]
        target = args.sparsity * total / (total - first.weight.numel()) if keep_first else args.sparsity
        scope = "layer" if "scope layer" in label else "global"
        cb = GradualPruning(target, start=0, end=int(steps * window), frequency=max(1, steps // 40), scope=scope,
                            ignore=[first] if keep_first else [])
        train_model, loss = (Distiller(model, copy.deepcopy(dense.model)), DistillationLoss()) if distill \
            else (model, "workload")
        fit(ft_plan, train_model, opt, schedule_for(ft_plan, opt), seed=args.seed, callbacks=[cb], loss_fn=loss)
        make_permanent(model)
        value = evaluate(wl, model)[wl.metric]
        print(f"| {label} ({steps} steps, sparsity {sparsity_of(model):.3f}) | {value:.3f} | "
              f"{100 * (value - base):+.1f} |", flush=True)


if __name__ == "__main__":
    main()
