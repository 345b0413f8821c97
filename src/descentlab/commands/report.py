"""``descentlab report DIR|URL``: render a comparison's report again from its run store."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError

HELP = "render the report of a comparison again from DIR/runs.sqlite or from a storage URL"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR|URL", help="a folder written by `descentlab compare` or `descentlab benchmark`, or the SQLAlchemy URL "
                   "given to its --storage")
    p.add_argument("--study", help="with a URL: the comparison's --name (default: the only one there)")
    p.add_argument("--out", help="with a URL: where to write report.html and the plots (default report-<study>)")


def run(args: argparse.Namespace) -> int:
    from ..report.html import render

    if "://" in args.dir:
        from ..engine.storage import check_url

        check_url(args.dir)
        out = Path(args.out or f"report-{args.study or 'compare'}")
        print(f"report: {render(out, storage=args.dir, study=args.study)}")
        return 0
    if args.study is not None or args.out is not None:
        raise UsageError("--study and --out go with a storage URL; a folder's report is written into the folder")
    folder = Path(args.dir)
    if (folder / "benchmark.json").is_file():  # a folder written by `descentlab benchmark`
        from ..report.benchmark import render as render_benchmark

        print(f"report: {render_benchmark(folder)}")
        return 0
    if not (folder / "runs.sqlite").is_file():
        raise UsageError(f"{args.dir!r} has no runs.sqlite: expected a folder written by `descentlab compare` "
                         "(or benchmark.json, by `descentlab benchmark`)")
    print(f"report: {render(folder)}")
    return 0
