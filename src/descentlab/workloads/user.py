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

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Workload

ENTRY_POINT_GROUP = "descentlab.workloads"


def is_reference(name: str) -> bool:
    """Whether ``name`` names a user's factory (``file.py:FUNC`` or ``module:FUNC``)."""
    return isinstance(name, str) and ":" in name


def split_reference(ref: str) -> tuple[str, str]:
    """``"a/b.py:make"`` -> ``("a/b.py", "make")``; the last colon separates (Windows drives)."""
    where, _, func = ref.rpartition(":")
    if not where or not func or not func.isidentifier():
        raise UsageError(
            f"invalid workload {ref!r}: expected path/to/file.py:FUNC or package.module:FUNC "
            "(FUNC a function that returns a descentlab.workloads.Workload)"
        )
    return where, func


def _is_file(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def absolute(ref: str) -> str:
    """The reference with a file's path made absolute (what a saved config keeps,
    so that ``--resume`` from another folder finds the same file)."""
    where, func = split_reference(ref)
    return f"{Path(where).resolve()}:{func}" if _is_file(where) else ref


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_file(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"workload file {path!r} does not exist" if not file.exists() else
                         f"workload file {path!r} is not a file")
    file = file.resolve()
    # One module per file (a name from its path), imported once per process.
    name = f"descentlab_user_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"workload file {path!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    folder = str(file.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # as `python file.py` does: its neighbours import
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - the user's code: any failure is theirs
        sys.modules.pop(name, None)
        if added:
            sys.path.remove(folder)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise UsageError(f"workload file {path!r} failed to import: {_first_line(exc)}") from None
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"workload module {name!r} not found (is it installed, or on PYTHONPATH?)") from None
        raise UsageError(f"workload module {name!r} failed to import: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"workload module {name!r} failed to import: {_first_line(exc)}") from None


def factory(ref: str) -> Callable[..., Workload]:
    """The function ``ref`` names (imported, not yet called)."""
    where, func = split_reference(ref)
    module = _import_file(where) if _is_file(where) else _import_module(where)
    what = "file" if _is_file(where) else "module"
    fn = getattr(module, func, None)
    if fn is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                        and getattr(v, "__module__", None) == module.__name__)
        hint = f" (it defines: {', '.join(public)})" if public else ""
        raise UsageError(f"workload {what} {where!r} has no function {func!r}{hint}")
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
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name.strip().lower().replace("_", "-"), ep)
    return found


def load_entry_point(ep: metadata.EntryPoint, seed: int, data_dir: str | os.PathLike | None = None) -> Workload:
    try:
        fn = ep.load()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"workload {ep.name!r} (entry point {ep.value!r}) failed to import: {_first_line(exc)}") from None
    return call(fn, seed, data_dir, f"{ep.name} ({ep.value})")


def entry_point_summary(ep: metadata.EntryPoint) -> str:
    """The first line of the factory's docstring (importing its module, loading no data)."""
    try:
        doc = inspect.getdoc(ep.load()) or ""
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the listing
        return f"(cannot be imported: {_first_line(exc)})"
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    dist = getattr(getattr(ep, "dist", None), "name", None)
    return f"{first or ep.value}" + (f" [{dist}]" if dist else "")
