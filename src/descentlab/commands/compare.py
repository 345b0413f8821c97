"""``descentlab compare``: strategies side by side on one workload, with a report."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from .train import WORKLOAD_HELP, batch_size
from .values import parse_pairs

HELP = "compare strategies (optimizers, schedules, settings) on a workload and write a report"

#: the default comparison (what `make demo` runs): the strategies the classic texts teach
DEFAULT_WORKLOAD = "mnist1d-cnn"
CLASSIC = "sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", default=DEFAULT_WORKLOAD, help=f"{WORKLOAD_HELP} (default {DEFAULT_WORKLOAD})")
    p.add_argument("--optimizers", help=f"comma-separated optimizers (default {CLASSIC}): registered names, "
                   "package.module:Name (torch.optim:AdamW) or path/to/file.py:Name")
    p.add_argument("--strategies", metavar="FILE.yaml", help="strategies with their own settings (see docs/compare.md)")
    p.add_argument("--schedule", help="schedule for every strategy that does not set its own: a name, "
                   "file.py:fn / module:fn (fn(step, total_steps) -> lr multiplier) or an LRScheduler class")
    p.add_argument("--sched", action="append", metavar="K=V",
                   help="setting of --schedule, e.g. --sched warmup_steps=100 (length-dependent ones default from the budget)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="budget in epochs (default: the workload's recipe)")
    budget.add_argument("--steps", type=int, help="budget in optimizer steps")
    p.add_argument("--seeds", type=int, default=1, help="seeds per strategy (default 1)")
    p.add_argument("--target", type=float, help="validation metric target for time-to-target (default: the workload's, e.g. 0.9 accuracy on mnist1d-cnn)")
    p.add_argument("--batch-size", type=batch_size, help="batch size (default: the workload's recipe)")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (default: 40 evaluations per run)")
    p.add_argument("--tune-lr", nargs="?", const=True, default=False, choices=["lr-find", "sweep"],
                   help="tune each strategy's lr first with the same budget, then compare tuned strategies: lr-find "
                        "(the range test, the default) or sweep (×1/10..×10 for a fifth of the budget)")
    p.add_argument("--out", help="output folder (default runs/compare-<workload>)")
    p.add_argument("--overwrite", action="store_true", help="replace a comparison already in --out")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn)")
    p.add_argument("--jobs", type=int, help="runs at once, each in a worker process with one torch thread "
                   "(default: one per core); the numbers are those of --jobs 1")
    p.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of the database that holds the comparison and its "
                   "runs (default sqlite:///OUT/runs.sqlite); e.g. postgresql://user@host/db, which "
                   "`descentlab worker --storage URL` on other machines joins")
    p.add_argument("--name", help="the comparison's name in the storage (default compare-<workload>)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads with --jobs 1 (default 1: the built-in "
                   "workloads are small, and one thread gives the numbers of the worker processes)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files to DIR, one folder per run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..compare import compare, from_file

    if args.optimizers is not None and args.strategies is not None:
        raise UsageError("give --optimizers or --strategies, not both")
    sched = parse_pairs(args.sched, "--sched")
    if sched and args.schedule is None:
        raise UsageError("--sched sets the settings of --schedule: give --schedule too")
    if args.schedule is not None:
        from .. import schedules

        args.schedule = schedules.get(args.schedule).name
    if args.strategies is not None:
        strategies = from_file(args.strategies, args.schedule, sched)
    else:
        strategies = args.optimizers if args.optimizers is not None else CLASSIC
    if args.workload is not None and ":" in args.workload:
        from ..workloads.user import absolute

        args.workload = absolute(args.workload)
    result = compare(
        args.workload, strategies, out=args.out, seeds=args.seeds, steps=args.steps, epochs=args.epochs,
        target=args.target, schedule=args.schedule, schedule_kwargs=sched, batch_size=args.batch_size,
        eval_every=args.eval_every, tune_lr=args.tune_lr, overwrite=args.overwrite, data_dir=args.data_dir,
        device=args.device, tensorboard=args.tensorboard, progress=not args.quiet, jobs=args.jobs,
        storage=args.storage, name=args.name,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(f"report: {result.report}")
    from ..engine.storage import mask

    runs = result.runs_db if result.storage.startswith("sqlite:///") else f"{mask(result.storage)} ({result.name})"
    print(f"table:  {result.summary_csv}   runs: {runs}")
    return 0
