"""``descentlab plot-schedule NAME [K=V ...] --steps N --out FILE.png``: draw a learning-rate curve."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .values import parse_pairs

HELP = "draw the learning-rate curve of a schedule to a PNG file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="schedule name (see `descentlab list schedules`)")
    p.add_argument("settings", nargs="*", metavar="K=V", help="schedule settings, e.g. total_steps=1000 min_lr=0")
    p.add_argument("--steps", type=int, required=True, help="number of optimizer steps to draw")
    p.add_argument("--lr", type=float, default=0.1, help="the optimizer's learning rate (default 0.1)")
    p.add_argument("--out", required=True, help="output PNG file")


def run(args: argparse.Namespace) -> int:
    from .. import schedules
    from ..report.plots import plot_lr_curve

    if args.steps < 1:
        raise UsageError(f"invalid --steps {args.steps}: expected an integer >= 1")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"invalid --out {args.out!r}: expected a .png file")
    settings = parse_pairs(args.settings, "schedule setting")
    lrs = schedules.lr_curve(args.name, args.steps, base_lr=args.lr, **settings)
    label = " ".join([args.name, *args.settings])
    plot_lr_curve(lrs, out, title=label)
    print(f"wrote {out} ({args.steps} steps, lr from {min(lrs):.4g} to {max(lrs):.4g})")
    return 0
