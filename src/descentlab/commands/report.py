"""``descentlab report DIR``: render a comparison's report again from DIR/runs.sqlite."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError

HELP = "render the report of a comparison again from DIR/runs.sqlite"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a folder written by `descentlab compare`")


def run(args: argparse.Namespace) -> int:
    from ..report.html import render

    folder = Path(args.dir)
    if not (folder / "runs.sqlite").is_file():
        raise UsageError(f"{args.dir!r} has no runs.sqlite: expected a folder written by `descentlab compare`")
    print(f"report: {render(folder)}")
    return 0
