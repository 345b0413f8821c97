"""``descentlab distill``: a student taught by a teacher, against the same student from scratch."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .train import WORKLOAD_HELP, add_optimizer_arguments, optimizer_settings

HELP = "distil a teacher into a smaller student and compare it with the same student trained from scratch"

ARCH_HELP = ("a built-in workload name (its model), cnn-C, mlp-H1xH2..., logreg, layers=N (a Hugging Face model: "
             "the workload's with N layers), path/to/file.py:FUNC or package.module:FUNC (FUNC() returns an nn.Module)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..compress.distill import A_DEFAULT, T_DEFAULT

    p.add_argument("--workload", help=WORKLOAD_HELP + "; any whose model outputs logits, per example "
                   "(classification) or per token (a language model)")
    p.add_argument("--teacher", metavar="ARCH", help=f"teacher architecture, trained with the recipe (default: the "
                   f"workload's model); {ARCH_HELP}")
    p.add_argument("--student", metavar="ARCH", help="student architecture (default: measured per workload, cnn-8 on "
                   "mnist1d-cnn; a Hugging Face model: layers=N/2 of the teacher's N; see docs/distill.md)")
    p.add_argument("--seed", type=int, default=0, help="seed of the teacher's and both students' initialisation and "
                   "batches (default 0)")
    p.add_argument("--out", help="output folder (default distill-<workload>): summary.json, report.html")
    p.add_argument("--temperature", type=float, default=T_DEFAULT, help=f"softmax temperature T > 0 of the soft "
                   f"targets (default {T_DEFAULT:g})")
    p.add_argument("--alpha", type=float, default=A_DEFAULT, help=f"weight of the soft targets in [0, 1]; 1 - alpha "
                   f"weighs the labels (default {A_DEFAULT:g})")
    p.add_argument("--steps", type=int, help="budget of the student and of scratch (default: the recipe's)")
    add_optimizer_arguments(p, "the teacher's and both students'")
    p.add_argument("--teacher-steps", type=int, help="budget of the teacher (default: the recipe's)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="run the teacher on every batch instead of caching its logits of the training split once")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn: the MNIST IDX files)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..compress.distill_run import distill

    if not args.workload:
        raise UsageError("no workload given: pass --workload (see `descentlab list workloads`)")
    out = args.out or f"distill-{args.workload.replace('/', '_').replace(':', '_')}"
    result = distill(args.workload, teacher=args.teacher, student=args.student, seed=args.seed, out=out,
                     temperature=args.temperature, alpha=args.alpha, steps=args.steps,
                     teacher_steps=args.teacher_steps, cache=args.cache, data_dir=args.data_dir,
                     **optimizer_settings(args))
    s = result.summary
    key = f"test_{s['metric']}"
    for name in ("teacher", "student", "scratch"):
        r = s[name]
        print(f"{name:8s} {r['arch']:16s} {r['parameters']:>9,} parameters  {key} {r[key]:.4f}")
    better = "higher" if s.get("metric_mode", "max") == "max" else "lower"
    print(f"margin (student - scratch) {s['margin']:+.4f} ({better} is better); wrote {out}/summary.json, report.html")
    return 0
