"""``descentlab list [optimizers|schedules|workloads]``."""

from __future__ import annotations

import argparse

HELP = "list optimizers, schedules or workloads, with a one-line description each"
KINDS = ("optimizers", "schedules", "workloads")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", default="optimizers", choices=KINDS)


def rows(kind: str) -> list[tuple[str, str]]:
    if kind == "optimizers":
        from .. import optim

        return [(n, optim.get(n).summary) for n in optim.available()]
    if kind == "schedules":
        from .. import schedules

        return [(n, schedules.get(n).summary) for n in schedules.available()]
    from .. import workloads

    return list(workloads.summaries().items())


def run(args: argparse.Namespace) -> int:
    table = rows(args.kind)
    width = max(len(n) for n, _ in table)
    for name, summary in table:
        print(f"{name:<{width}}  {summary}")
    return 0
