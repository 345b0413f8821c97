"""The ``descentlab`` command: a thin layer over the library.

Each subcommand is a module of ``descentlab.commands`` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Usage and configuration
errors print one line to stderr and exit 2, without a traceback; other
failures exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import UsageError

#: subcommand -> module in descentlab.commands
COMMANDS = {
    "list": "list_cmd",
    "plot-schedule": "plot_schedule",
    "train": "train",
    "compare": "compare",
    "benchmark": "benchmark",
    "lr-find": "lr_find",
    "tune": "tune",
    "distill": "distill",
    "prune": "prune",
    "report": "report",
    "worker": "worker",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, not argparse's usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="descentlab", description="Optimization strategies for deep-learning training.")
    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".commands.{module_name}", __package__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def set_threads(threads: int) -> None:
    """Torch CPU threads for this process and the processes it starts.

    The built-in workloads are small: measured on the 2-core machine, the
    MNIST-1D CNN took 5-6 ms a step with 1 thread whatever else ran, and 17 to
    374 ms with 2 threads when another process was busy (OpenMP threads spin
    when the cores are shared). So `train` and `compare` default to 1.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"invalid --threads {threads!r}: expected an integer >= 1")
    import os

    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "threads", None) is not None:
            set_threads(args.threads)
        return args.run(args)
    except (UsageError, ValueError, TypeError) as exc:
        # Names, hyperparameters and settings are validated by the library with
        # ValueError/TypeError naming the value: the user's input, so exit 2.
        print(f"descentlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("descentlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a failure, not bad input
        print(f"descentlab: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
