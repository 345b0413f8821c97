"""``descentlab list [optimizers|schedules|workloads|suites]``."""

from __future__ import annotations

import argparse

HELP = ("list optimizers, schedules, workloads or the benchmark's suites, with a one-line description each "
        "(installed packages' entry points too; any module:Name or file.py:Name is accepted besides)")
KINDS = ("optimizers", "schedules", "workloads", "suites")


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
    if kind == "suites":
        from ..benchmark import suites

        out = []
        for name in suites.BUILTIN:
            entries = suites.load(name).entries
            out.append((name, f"{len(entries)} workloads, each with a held-out variant: "
                              + ", ".join(e.name for e in entries) + " (descentlab benchmark --suite " + name + ")"))
        return out
    from .. import workloads

    return list(workloads.summaries().items())


def run(args: argparse.Namespace) -> int:
    table = rows(args.kind)
    width = max(len(n) for n, _ in table)
    for name, summary in table:
        print(f"{name:<{width}}  {summary}")
    return 0
