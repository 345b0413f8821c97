"""``descentlab list [optimizers|schedules|workloads]``."""

from __future__ import annotations

import argparse

HELP = ("list optimizers, schedules or workloads, with a one-line description each (installed packages' "
        "entry points too; any module:Name or file.py:Name is accepted besides)")
KINDS = ("optimizers", "schedules", "workloads")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", default="optimizers", choices=KINDS)


def rows(kind: str) -> list[tuple[str, str]]:
    if kind in ("optimizers", "schedules"):
        from .. import optim, schedules
        from ..imports import entry_point_summary

        module = optim if kind == "optimizers" else schedules
        table = [(n, module.get(n).summary) for n in module.available()]
        # installed packages' names (entry points), with where they come from
        table += [(n, entry_point_summary(ep) + f" ({ep.value})") for n, ep in module.plugins().items()]
        return table
    from .. import workloads

    return list(workloads.summaries().items())


def run(args: argparse.Namespace) -> int:
    table = rows(args.kind)
    width = max(len(n) for n, _ in table)
    for name, summary in table:
        print(f"{name:<{width}}  {summary}")
    return 0
