"""``descentlab benchmark``: strategies scored across a suite of workloads, as AlgoPerf scores them."""

from __future__ import annotations

import argparse
import sys

HELP = "score strategies across a suite of workloads by time to target (AlgoPerf's benchmark score), with a report"


def _seeds(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seeds {text!r}: expected an integer or auto") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", help="small (default: 5 workloads, minutes), full (adds the longer ones and charlm), "
                   "families (one small workload per AlgoPerf workload family), or a suite file FILE.yaml "
                   "(see docs/benchmark.md)")
    p.add_argument("--workloads", help="comma-separated workloads instead of a suite: built-in names (their suite "
                   "targets) or file.py:FUNC (target and budget set by the procedure)")
    p.add_argument("--optimizers", help="comma-separated optimizers (default sgd,momentum,nesterov,adagrad,rmsprop,"
                   "adam,adamw): names, package.module:Name or path/to/file.py:Name")
    p.add_argument("--strategies", metavar="FILE.yaml", help="strategies as for compare, each with an optional "
                   "search space `space:` for --ruleset external")
    p.add_argument("--ruleset", default="self", help="self (default: the defaults, 3x the budget) or external "
                   "(K quasi-random trials of each strategy's search space per workload and study)")
    p.add_argument("--trials", type=int, help="trials per workload and study, external ruleset (default 5)")
    p.add_argument("--studies", type=int, default=1, help="independent studies (default 1; AlgoPerf runs 5)")
    p.add_argument("--seeds", type=_seeds, default="auto", help="seeds per trial, at most 10, or auto (default: 3, "
                   "then 5, 7, 10 until the leader's interval separates from the next strategy's; under the "
                   "external ruleset auto adds studies, one seed each)")
    p.add_argument("--time", default="seconds", help="seconds (default) or steps: the time the score is on "
                   "(both profiles are reported)")
    p.add_argument("--baseline", help="the strategy speedups are measured against (default adamw, else the first)")
    p.add_argument("--jobs", type=int, help="runs at once, each in a worker process with one torch thread "
                   "(default: one per core)")
    p.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of the database that holds the benchmark's "
                   "runs (default sqlite:///OUT/runs.sqlite); `descentlab worker --storage URL` joins it")
    p.add_argument("--name", help="the benchmark's name in the storage (default benchmark-<suite>-<ruleset>)")
    p.add_argument("--out", help="output folder (default runs/benchmark-<suite>-<ruleset>)")
    p.add_argument("--overwrite", action="store_true", help="replace a benchmark of that name already there")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads with --jobs 1 (default 1: the numbers "
                   "of the worker processes, which have one each)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from ..benchmark.api import benchmark

    result = benchmark(
        args.suite, args.strategies, workloads=args.workloads, optimizers=args.optimizers, ruleset=args.ruleset,
        trials=args.trials, studies=args.studies, seeds=args.seeds, time=args.time, jobs=args.jobs,
        storage=args.storage, name=args.name, out=args.out, baseline=args.baseline, overwrite=args.overwrite,
        data_dir=args.data_dir, device=args.device, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    width = max(len(s) for s in result.scores)
    for s in result.data["verdict"]["order"]:
        lo, hi = result.score_ci[s]
        print(f"{s:<{width}}  score {result.scores[s]:.3f}  [{lo:.3f}, {hi:.3f}]")
    print(f"report: {result.report}")
    print(f"data:   {result.out / 'benchmark.json'}   runs: {result.out / 'times.csv'}")
    return 0
