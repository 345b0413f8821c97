"""A user's own workload: ``path/to/file.py:FUNC``, ``package.module:FUNC``, or an
installed package's entry point in the group ``descentlab.workloads``.

``FUNC(seed=0)`` (and, if it takes one, ``data_dir=``) returns a
:class:`~descentlab.workloads.Workload`. Loading a file runs the user's own
code, exactly as ``python file.py`` would run it (its folder first on
``sys.path``, so it can import its neighbours); nothing else given on the
command line or in YAML is ever executed. Every failure is one
:class:`~descentlab.errors.UsageError` naming the file or module and what was
wrong: a missing file, a missing function, an import that fails (with the
first line of its exception), a factory that raises or returns something else.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from importlib import metadata
from typing import Any

from .. import imports
from ..errors import UsageError
from .base import Workload

ENTRY_POINT_GROUP = "descentlab.workloads"
EXPECTED = "a function that returns a descentlab.workloads.Workload"
_first_line = imports.first_line
is_reference = imports.is_reference


def split_reference(ref: str) -> tuple[str, str]:
    """``"a/b.py:make"`` -> ``("a/b.py", "make")``; the last colon separates (Windows drives)."""
    return imports.split(ref, "workload", EXPECTED)


def absolute(ref: str) -> str:
    """The reference with a file's path made absolute (what a saved config keeps,
    so that ``--resume`` from another folder finds the same file)."""
    return imports.absolute(ref, "workload", EXPECTED)


def factory(ref: str) -> Callable[..., Workload]:
    """The function ``ref`` names (imported, not yet called)."""
    fn = imports.target(ref, "workload", EXPECTED)
    if not callable(fn):
        raise UsageError(f"{ref!r} is a {type(fn).__name__}, not a function that returns a Workload")
    return fn


def call(fn: Callable[..., Any], seed: int, data_dir: str | os.PathLike | None, label: str) -> Workload:
    """``fn(seed=seed[, data_dir=...])``, checked to return a Workload."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict[str, Any] = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "seed" in params or takes_any:
        kwargs["seed"] = seed
    if "data_dir" in params or takes_any:
        kwargs["data_dir"] = data_dir
    try:
        result = fn(**kwargs)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory failed
        raise UsageError(f"workload factory {label!r} raised {_first_line(exc)}") from None
    if not isinstance(result, Workload):
        raise UsageError(
            f"workload factory {label!r} returned {type(result).__name__}, expected a descentlab.workloads.Workload"
        )
    return result


def load_reference(ref: str, seed: int, data_dir: str | os.PathLike | None = None) -> Workload:
    """Build the workload of ``file.py:FUNC`` or ``module:FUNC``."""
    return call(factory(ref), seed, data_dir, ref)


# -- installed packages: the entry-point group --------------------------------------


def entry_points() -> dict[str, metadata.EntryPoint]:
    """``{name: entry point}`` of the group ``descentlab.workloads`` (not loaded)."""
    return {name.replace("_", "-"): ep for name, ep in imports.entry_points(ENTRY_POINT_GROUP).items()}


def load_entry_point(ep: metadata.EntryPoint, seed: int, data_dir: str | os.PathLike | None = None) -> Workload:
    return call(imports.load_entry_point(ep, "workload"), seed, data_dir, f"{ep.name} ({ep.value})")


entry_point_summary = imports.entry_point_summary
