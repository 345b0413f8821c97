"""``descentlab train``: train a built-in workload with a strategy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..imports import short
from .values import parse_pairs

HELP = "train a workload (its default recipe unless flags or --config say otherwise)"

WORKLOAD_HELP = ("workload: a name (see `descentlab list workloads`), path/to/file.py:FUNC or package.module:FUNC "
                 "(FUNC(seed=0) returns a descentlab.workloads.Workload; importing it runs that code)")


def batch_size(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'full', got {text!r}") from None


OPTIMIZER_HELP = ("optimizer: a name (see `descentlab list optimizers`), package.module:Name (torch.optim:AdamW) "
                  "or path/to/file.py:Name, a torch.optim.Optimizer subclass or a factory f(params, **hparams)")
SCHEDULE_HELP = ("learning-rate schedule: a name (see `descentlab list schedules`), path/to/file.py:fn or "
                 "module:fn with fn(step, total_steps) -> lr multiplier, or an LRScheduler class such as "
                 "torch.optim.lr_scheduler:OneCycleLR (its arguments with --sched K=V)")


def add_optimizer_arguments(p: argparse.ArgumentParser, whose: str) -> None:
    """``--optimizer``, ``--lr`` and ``--opt`` of a command whose trainings take them."""
    p.add_argument("--optimizer", help=f"{whose} {OPTIMIZER_HELP} (default: the workload's recipe)")
    p.add_argument("--lr", type=float, help="learning rate (default: the recipe's, else the workload's for a "
                   "registered optimizer, else the class's own default)")
    p.add_argument("--opt", action="append", metavar="K=V", help="optimizer hyperparameter, e.g. --opt betas=(0.9,0.95)")


def optimizer_settings(args: argparse.Namespace) -> dict:
    return {"optimizer": args.optimizer, "lr": args.lr, "opt": parse_pairs(args.opt, "--opt")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", help=WORKLOAD_HELP)
    p.add_argument("--optimizer", help=OPTIMIZER_HELP)
    p.add_argument("--lr", type=float, help="learning rate (default: the workload's for a registered optimizer, "
                   "else the class's own default)")
    p.add_argument("--opt", action="append", metavar="K=V", help="optimizer hyperparameter, e.g. --opt betas=(0.9,0.95)")
    p.add_argument("--schedule", help=SCHEDULE_HELP)
    p.add_argument("--sched", action="append", metavar="K=V", help="schedule setting, e.g. --sched warmup_steps=100")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="number of epochs")
    budget.add_argument("--steps", type=int, help="number of optimizer steps")
    p.add_argument("--batch-size", type=batch_size, help="N, 1 (stochastic) or 'full' (batch gradient descent)")
    p.add_argument("--weight-decay", type=float, help="weight decay, in the optimizer's own sense")
    p.add_argument("--l1", type=float, help="L1 penalty coefficient")
    p.add_argument("--clip-norm", type=float, help="clip the global gradient norm to this value")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE evaluations without improvement")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="fp32 (default), bf16 autocast, fp16 (GPU)")
    p.add_argument("--seed", type=int, help="random seed (data split, initialization, order); default 0")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (default: each epoch, or 20 times a run)")
    p.add_argument("--checkpoint-every", type=int, help="write a checkpoint every N steps (default: 10 per run)")
    p.add_argument("--resume", action="store_true", default=None, help="continue the run in --out from its newest valid checkpoint")
    p.add_argument("--nproc", type=int, help="data-parallel processes on this machine (default 1), started by "
                   "torch's elastic agent; under torchrun, torchrun's --nproc-per-node says it")
    p.add_argument("--strategy", choices=["ddp", "zero", "fsdp", "diloco"],
                   help="how the processes share the work: ddp (default), zero (optimizer state sharded), "
                   "fsdp (everything sharded, FSDP2), diloco (parameters averaged every --sync-every steps)")
    p.add_argument("--comm-hook", help="DDP communication hook: allreduce, bf16, fp16 or powersgd")
    p.add_argument("--sync-batchnorm", action="store_true", default=None,
                   help="with --nproc N: BatchNorm statistics over the global batch (torch's SyncBatchNorm), "
                   "so that N processes normalize as one; without it each process normalizes its own part")
    p.add_argument("--sync-every", type=int, help="diloco: inner steps between synchronisations (default 20)")
    p.add_argument("--outer-lr", type=float, help="diloco: outer Nesterov SGD lr (default 0.7)")
    p.add_argument("--outer-momentum", type=float, help="diloco: outer momentum (default 0.9)")
    p.add_argument("--max-restarts", type=int, help="restart a failed group up to K times; it resumes from "
                   "the newest checkpoint (default 0)")
    p.add_argument("--nnodes", help="machines, N or MIN:MAX (with --rdzv-endpoint; default 1)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous of the machines (torch's c10d)")
    p.add_argument("--config", help="YAML file of settings (keys as the flags, e.g. batch_size: 64)")
    p.add_argument("--out", help="output folder: summary.json, metrics.csv, checkpoints/, runs.sqlite")
    p.add_argument("--data-dir", help="folder of data files (mnist-cnn: the MNIST IDX files)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the built-in workloads are small)")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files to DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line of stdout")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from ..experiment.config import build, load_yaml

    file_values = load_yaml(args.config) if args.config else {}
    saved = Path(args.out or "") / "config.json"
    if args.resume and args.out and saved.is_file():
        # --resume continues the saved run: its settings fill in what the flags do not give
        file_values = {**json.loads(saved.read_text()), **file_values, "resume": True}
    flags = {
        "workload": args.workload,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "opt": parse_pairs(args.opt, "--opt") or None,
        "schedule": args.schedule,
        "sched": parse_pairs(args.sched, "--sched") or None,
        "epochs": args.epochs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "weight_decay": args.weight_decay,
        "l1": args.l1,
        "clip_norm": args.clip_norm,
        "early_stopping": args.early_stopping,
        "precision": args.precision,
        "seed": args.seed,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
        "nproc": args.nproc,
        "strategy": args.strategy,
        "comm_hook": args.comm_hook,
        "sync_batchnorm": args.sync_batchnorm,
        "sync_every": args.sync_every,
        "outer_lr": args.outer_lr,
        "outer_momentum": args.outer_momentum,
        "max_restarts": args.max_restarts,
        "nnodes": args.nnodes,
        "rdzv_endpoint": args.rdzv_endpoint,
        "out": args.out,
        "data_dir": args.data_dir,
        "device": args.device,
        "quiet": args.quiet,
        "tensorboard": args.tensorboard,
    }
    if "epochs" in file_values and args.steps is not None or "steps" in file_values and args.epochs is not None:
        file_values.pop("epochs", None)
        file_values.pop("steps", None)
    return build(file_values, flags)


def run(args: argparse.Namespace) -> int:
    import os

    from ..experiment import train
    from ..train.trainer import NonFiniteLossError

    config = config_from_args(args)
    try:  # --nproc > 1, or under torchrun: data-parallel processes (experiment.parallel)
        summary = train(config, log=lambda msg: print(msg, file=sys.stderr))
    except NonFiniteLossError as exc:
        print(f"descentlab: training diverged: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 writes and says it
        return 0
    if not summary:  # --nnodes: rank 0 ran on another machine
        print("this machine's ranks finished; rank 0's machine has the summary", file=sys.stderr)
        return 0
    final = summary["final"]
    metric = summary["metric"]
    line = (
        f"{summary['workload']}: {short(summary['optimizer'])} for {summary['steps']} steps in "
        f"{summary['wall_seconds']:.1f} s; final test {metric} {final.get(f'test_{metric}', float('nan')):.4f}, "
        f"best-by-validation test {metric} {summary['best'].get(f'test_{metric}', float('nan')):.4f}"
    )
    print(line, file=sys.stderr if args.json else sys.stdout)
    if config.out:
        print(f"wrote {config.out}/summary.json, metrics.csv, checkpoints/, runs.sqlite", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    return 0


__all__ = ["HELP", "UsageError", "add_arguments", "run"]
