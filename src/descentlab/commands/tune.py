"""``descentlab tune``: an Optuna search over strategies (see :mod:`descentlab.tune.study`)."""

from __future__ import annotations

import argparse
import sys

from .train import WORKLOAD_HELP

HELP = "search strategies (optimizer, lr, schedule, warmup, weight decay, batch size) with Optuna"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tune.study import DEFAULT_PRUNER, PRUNERS

    p.add_argument("--workload", required=True, help=WORKLOAD_HELP)
    p.add_argument("--trials", type=int, default=20,
                   help="the study's total of finished trials (default 20): a rerun finishes the missing ones")
    p.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of the study (default sqlite:///OUT/study.sqlite)")
    p.add_argument("--jobs", type=int, help="trials at once, in worker processes of one torch thread on this machine "
                   "(default: one per core)")
    p.add_argument("--out", help="output folder (default tune-<workload>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's run (default 0)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps of every trial (default: the workload's recipe)")
    budget.add_argument("--epochs", type=int, help="epochs of every trial (default: the workload's recipe)")
    p.add_argument("--space", metavar="FILE.yaml", help="search space (default: see docs/tune.md)")
    p.add_argument("--pruner", choices=PRUNERS, default=DEFAULT_PRUNER,
                   help=f"stops poor trials early from the validation metric (default {DEFAULT_PRUNER})")
    p.add_argument("--study-name", help="name of the study in the storage (default descentlab-tune-<workload>)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per trial (default 1)")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn: the MNIST IDX files)")
    p.add_argument("--quiet", action="store_true", help="print only the best trial")


def run(args: argparse.Namespace) -> int:
    from ..tune.study import tune

    from ..engine.workers import cores

    lines = []

    def log(line: str) -> None:
        lines.append(line)
        if not args.quiet or line.startswith(("best:", "wrote", "no trial")):
            print(line, flush=True)

    result = tune(args.workload, trials=args.trials, storage=args.storage, jobs=args.jobs if args.jobs is not None else cores(), out=args.out,
                  seed=args.seed, steps=args.steps, epochs=args.epochs, space=args.space, pruner=args.pruner,
                  study_name=args.study_name, data_dir=args.data_dir, threads=args.threads, log=log)
    if result["best_trial"] is None:
        print(f"descentlab: no trial of {result['n_trials']} completed (all pruned or diverged)", file=sys.stderr)
        return 1
    return 0
