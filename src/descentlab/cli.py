"""The ``descentlab`` command: a thin layer over the library.

Usage and configuration errors print one line to stderr and exit 2, without a
traceback; other failures exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(message)


def _cmd_list(args: argparse.Namespace) -> int:
    kind = args.kind
    if kind == "optimizers":
        from . import optim

        rows = [(name, optim.get(name).summary) for name in optim.available()]
    else:  # pragma: no cover - the choices of argparse keep this unreachable
        raise UsageError(f"unknown list {kind!r}")
    width = max(len(n) for n, _ in rows)
    for name, summary in rows:
        print(f"{name:<{width}}  {summary}")
    return 0


#: subcommand name -> (help, add_arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "list": (
        "list optimizers (with a one-line description each)",
        lambda p: p.add_argument("kind", nargs="?", default="optimizers", choices=["optimizers"]),
        _cmd_list,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="descentlab", description="Optimization strategies for deep-learning training.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_text, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UsageError as exc:
        print(f"descentlab: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        # Invalid names and hyperparameters from the library are the user's input.
        print(f"descentlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("descentlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
