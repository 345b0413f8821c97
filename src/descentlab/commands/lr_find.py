"""``descentlab lr-find``: the learning-rate range test on a workload."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..imports import short
from .train import OPTIMIZER_HELP, WORKLOAD_HELP, batch_size
from .values import parse_pairs

HELP = "suggest a learning rate with a range test (model, optimizer and RNG left as they were)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tune import rules
    from ..tune.find import DEFAULT_SWEEPS

    p.add_argument("--workload", help=WORKLOAD_HELP)
    p.add_argument("--optimizer", help=f"{OPTIMIZER_HELP} (default: the workload's recipe)")
    p.add_argument("--opt", action="append", metavar="K=V", help="optimizer hyperparameter, e.g. --opt betas=(0.9,0.95)")
    p.add_argument("--batch-size", type=batch_size, help="batch size (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="the model of a training run with this seed (default 0)")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last lr of the sweep (default 10)")
    p.add_argument("--num-steps", type=int, default=100, help="steps per sweep (default 100)")
    p.add_argument("--sweeps", type=int, default=DEFAULT_SWEEPS,
                   help=f"sweeps over different data orders; the suggestion is their median (default {DEFAULT_SWEEPS})")
    p.add_argument("--rule", choices=list(rules.RULES), default=rules.DEFAULT_RULE,
                   help=f"how the curve is read (default {rules.DEFAULT_RULE}; see docs/lr-find.md)")
    p.add_argument("--groups", choices=["auto", "together", "each"], default="auto",
                   help="param groups: one sweep scaling all, or one per group (auto: per group when their lrs differ)")
    p.add_argument("--out", help="output folder (default lr-find-<workload>): lr_find.json, lr_find.png")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn: the MNIST IDX files)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..experiment.lock import hold
    from ..tune.find import find_for_workload, write

    if not args.workload:
        raise UsageError("no workload given: pass --workload (see `descentlab list workloads`)")
    opt = parse_pairs(args.opt, "--opt")
    result, plan = find_for_workload(
        args.workload, optimizer=args.optimizer, seed=args.seed, opt=opt, batch_size=args.batch_size,
        data_dir=args.data_dir, sweeps=args.sweeps, start_lr=args.start_lr, end_lr=args.end_lr,
        num_steps=args.num_steps, rule=args.rule, groups=args.groups,
    )
    wl = plan["workload"]
    out = Path(args.out or f"lr-find-{wl.name}")
    with hold(out):
        write(result, out, workload=wl.name, extra={"batch_size": plan["batch_size"], "seed": args.seed,
                                                    "optimizer_source": plan["optimizer_source"],
                                                    "lr_before": plan["hparams"]["lr"], "lr_source": plan["lr_source"]})
    conf = result.confidence
    spread = f", spread x{conf['spread']:.2g} over {conf['sweeps']} sweeps" if conf.get("spread") else ""
    print(f"{wl.name}: {short(plan['optimizer'])} suggested lr {result.suggested_lr:.3g} ({result.rule}{spread}); "
          f"before: {plan['hparams']['lr']:.3g} ({plan['lr_source']})")
    for g in result.groups:
        print(f"  group {g['index']}: lr {g['lr_before']:.3g} -> suggested {g['suggested_lr']:.3g}")
    if result.note:
        print(f"  note: {result.note}")
    print(f"wrote {out}/lr_find.json, lr_find.png")
    return 0
