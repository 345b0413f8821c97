"""``descentlab worker --storage URL``: join a comparison or a tune study from another machine."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError

HELP = "join a comparison, benchmark or tune study in a shared storage and run its waiting runs or trials"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", required=True,
                   help="SQLAlchemy URL of the database that holds it, e.g. postgresql://user@host/db")
    p.add_argument("--study", help="the comparison's --name or the study's --study-name (default: the only one there)")
    p.add_argument("--jobs", type=int, help="runs at once on this machine, each in a process of one torch thread "
                   "(default: one per core; 1 runs them in this process, with --threads)")
    p.add_argument("--out", help="folder for this machine's checkpoints and trial folders (default runs/worker-<study>)")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads with --jobs 1 (default 1, as each "
                   "process of --jobs N, so that a run's numbers do not depend on how many ran at once)")


def run(args: argparse.Namespace) -> int:
    from ..engine import queue
    from ..engine.storage import check_url, heartbeat_interval, mask, open_storage, quiet_optuna
    from ..engine.workers import cores

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"invalid jobs={args.jobs!r}: expected an integer >= 1")
    jobs = args.jobs or cores()
    check_url(args.storage, jobs)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with quiet_optuna():
        storage = open_storage(args.storage, heartbeat_interval())
        names = queue.names(storage)
        where = mask(args.storage)
        if args.study is not None and args.study not in names:
            raise UsageError(f"no comparison or tune study {args.study!r} in {where!r}"
                             + (f" (it holds {', '.join(map(repr, names))})" if names else " (it holds none)"))
        if args.study is None and len(names) != 1:
            raise UsageError(f"{where!r} holds no descentlab comparison or tune study" if not names else
                             f"{where!r} holds {len(names)}: name one with --study ({', '.join(names)})")
        name = args.study or names[0]
        study = queue.find(storage, name)
        kind = study.user_attrs.get(queue.KIND)
    out = args.out or f"runs/worker-{name}"
    if kind == "tune":
        from ..tune.study import join

        join(args.storage, name, out=out, jobs=jobs, data_dir=args.data_dir, log=log)
        print(f"study {name}: no trial left to run")
        return 0
    if kind == "benchmark":
        from ..benchmark import execute as bx
        from ..benchmark.api import PLAN

        plan = bx.Plan.from_settings(study.user_attrs[PLAN]["plan"], storage=args.storage, name=name,
                                     heartbeat=heartbeat_interval(), data_dir=args.data_dir, device=args.device,
                                     checkpoints=out)
        log(f"joined benchmark {name} in {where}: {jobs} worker(s) on this machine")
        bx.execute(plan, jobs, log=log)
        print(f"benchmark {name}: no run left to run; the benchmark command, run again with the same arguments, "
              "writes its report")
        return 0
    from ..compare import execute as ex

    plan = ex.Plan.from_settings(study.user_attrs[queue.SETTINGS], storage=args.storage, name=name,
                                 heartbeat=heartbeat_interval(), data_dir=args.data_dir, device=args.device,
                                 checkpoints=out)
    log(f"joined comparison {name} in {where}: {jobs} worker(s) on this machine")
    ex.execute(plan, jobs, log=log)
    print(f"comparison {name}: no run left to run; `descentlab report {where} --study {name} --out DIR` renders it")
    return 0
