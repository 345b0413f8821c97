"""References to a user's code: ``path/to/file.py:NAME`` and ``package.module:NAME``.

One set of import rules for every kind of thing a user may name this way (a
workload factory, a model, an optimizer, a schedule). Loading a file runs the
user's own code, exactly as ``python file.py`` would run it (its folder first on
``sys.path``, so it can import its neighbours); nothing else given on the
command line or in YAML is ever executed. Every failure is one
:class:`~descentlab.errors.UsageError` naming the file or module and what was
wrong: a missing file, a missing name, an import that fails (with the first
line of its exception).

:func:`origin` says where an imported object came from, for reproducibility:
the distribution and version of an installed package, or the sha256 of a
user's file.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import UsageError

#: module names given to users' files (one per file, from its path)
FILE_MODULE_PREFIX = "descentlab_user_"


def is_reference(name: Any) -> bool:
    """Whether ``name`` is ``file.py:NAME`` or ``module:NAME``."""
    return isinstance(name, str) and ":" in name


def split(ref: str, kind: str, expected: str) -> tuple[str, str]:
    """``"a/b.py:make"`` -> ``("a/b.py", "make")``; the last colon separates (Windows drives).
    ``expected`` describes NAME in the error, e.g. "a function that returns a Workload"."""
    where, _, name = ref.strip().rpartition(":")
    if not where or not name or not all(part.isidentifier() for part in name.split(".")):
        word = "FUNC" if expected.startswith("a function") else "NAME"
        raise UsageError(f"invalid {kind} {ref!r}: expected path/to/file.py:{word} or package.module:{word} "
                         f"({word} {expected})")
    return where, name


def is_file(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def absolute(ref: str, kind: str = "reference", expected: str = "a name in it") -> str:
    """The reference with a file's path made absolute (what a saved config keeps,
    so that a resume or a worker from another folder finds the same file)."""
    where, name = split(ref, kind, expected)
    return f"{Path(where).resolve()}:{name}" if is_file(where) else f"{where}:{name}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_file(path: str, kind: str) -> Any:
    """The module of a user's file, imported once per process."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{kind} file {path!r} does not exist" if not file.exists() else
                         f"{kind} file {path!r} is not a file")
    file = file.resolve()
    name = f"{FILE_MODULE_PREFIX}{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"{kind} file {path!r} cannot be imported as Python")
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
        raise UsageError(f"{kind} file {path!r} failed to import: {first_line(exc)}") from None
    return module


def import_module(name: str, kind: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"{kind} module {name!r} not found (is it installed, or on PYTHONPATH?)") from None
        raise UsageError(f"{kind} module {name!r} failed to import: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{kind} module {name!r} failed to import: {first_line(exc)}") from None


def target(ref: str, kind: str, expected: str, *, noun: str = "function") -> Any:
    """The object ``ref`` names (imported, not called). ``noun`` is what the
    error calls a missing NAME ("function", "name")."""
    where, name = split(ref, kind, expected)
    file = is_file(where)
    module = import_file(where, kind) if file else import_module(where, kind)
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if obj is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        lower = {n.lower(): n for n in names}
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
        own = sorted(n for n in names if getattr(vars(module)[n], "__module__", None) == module.__name__)
        hint = (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else
                f" (it defines: {', '.join(own)})" if own else "")
        raise UsageError(f"{kind} {'file' if file else 'module'} {where!r} has no {noun} {name!r}{hint}")
    return obj


# -- where an object came from ----------------------------------------------------------


def sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def reference_of(obj: Any) -> str | None:
    """A reference string that imports ``obj`` again in another process
    (``module:Qual.Name``, or ``/abs/file.py:Name`` for a user's file), or None
    where there is none (``__main__``, a local class, a lambda)."""
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module_name or not qualname or "<" in qualname or module_name == "__main__":
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        return None
    if module_name.startswith(FILE_MODULE_PREFIX):
        file = getattr(module, "__file__", None)
        return f"{Path(file).resolve()}:{qualname}" if file else None
    return f"{module_name}:{qualname}"


@functools.lru_cache(maxsize=None)
def _distribution(module_name: str) -> tuple[str | None, str | None]:
    top = module_name.split(".")[0]
    try:
        names = metadata.packages_distributions().get(top) or []
    except Exception:  # noqa: BLE001 - broken metadata elsewhere must not break a run
        names = []
    for dist in names:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def origin(obj: Any, ref: str | None = None, plugin: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where ``obj`` came from: ``reference``, ``qualname``, and either ``package``
    and ``version`` (an installed distribution) or ``file`` and ``sha256`` (a
    user's file); what a result records so that it can be rerun. ``plugin``: an
    entry point's ``entry_point``, ``package`` and ``version`` (:meth:`Catalog.plugin`)."""
    if plugin:
        return {"reference": ref, "qualname": f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}",
                **plugin}
    module_name = getattr(obj, "__module__", "") or ""
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    info: dict[str, Any] = {"reference": ref if ref is not None else reference_of(obj),
                            "qualname": f"{module_name}.{qualname}" if module_name else qualname}
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None) if module is not None else None
    if module_name.startswith(FILE_MODULE_PREFIX) or module_name == "__main__":
        if file and Path(file).is_file():
            info.update(file=str(Path(file).resolve()), sha256=sha256(file))
            info["qualname"] = f"{Path(file).name}:{qualname}"
        return info
    dist, version = _distribution(module_name)
    if dist is not None:
        info.update(package=dist, version=version)
    elif file and Path(file).is_file():  # a module on PYTHONPATH, not installed
        info.update(file=str(Path(file).resolve()), sha256=sha256(file))
    return info


def own_origin(module: str, name: str) -> dict[str, Any]:
    """:func:`origin` of one of descentlab's own registered names (``module``: ``descentlab.optim``...)."""
    from . import __version__

    return {"reference": name, "qualname": f"{module}:{name}", "package": "descentlab", "version": __version__}


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """``{name: entry point}`` of an entry-point group (not loaded); names lower-case."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name.strip().lower(), ep)
    return found


def load_entry_point(ep: metadata.EntryPoint, kind: str) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{kind} {ep.name!r} (entry point {ep.value!r}) failed to import: {first_line(exc)}") from None


def entry_point_summary(ep: metadata.EntryPoint) -> str:
    """The first line of the object's docstring, then its distribution (importing its module)."""
    try:
        doc = inspect.getdoc(ep.load()) or ""
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the listing
        return f"(cannot be imported: {first_line(exc)})"
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    dist = getattr(getattr(ep, "dist", None), "name", None)
    return f"{first or ep.value}" + (f" [{dist}]" if dist else "")


# -- a kind of thing users name: by reference, entry point, or the object itself ----------

OBJECT_PREFIX = "python:"


class Catalog:
    """Looking up the user's own objects of one kind (optimizers, schedules).

    ``make(name, obj, label, plugin)`` checks ``obj`` and wraps it (``plugin``:
    an entry point's provenance, or None);
    ``registered()`` lists the built-in names, which shadow entry points of the
    same name. Results are cached per process by their canonical name: an
    absolute reference, an entry point's name, or ``python:QualName`` for an
    object that cannot be imported again by name (held in this process only).
    """

    def __init__(self, kind: str, group: str, expected: str, make: Callable[..., Any],
                 registered: Callable[[], Iterable[str]]):
        self.kind, self.group, self.expected = kind, group, expected
        self._make, self._registered = make, registered
        self._cache: dict[str, Any] = {}
        self._objects: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        made = build()
        with self._lock:
            return self._cache.setdefault(key, made)

    def plugins(self) -> dict[str, metadata.EntryPoint]:
        """The group's entry points that no built-in name shadows."""
        builtin = {n.replace("-", "_") for n in self._registered()}
        return {n: ep for n, ep in entry_points(self.group).items() if n.replace("-", "_") not in builtin}

    def reference(self, text: str) -> Any:
        """``module:Name``, ``file.py:Name`` or ``python:QualName``."""
        if text.startswith(OBJECT_PREFIX):
            if text not in self._objects:
                raise UsageError(f"{self.kind} {text!r} was a Python object in another process, which this one "
                                 "cannot import: pass it as package.module:Name or path/to/file.py:Name")
            return self.object(self._objects[text])
        ref = absolute(text, self.kind, self.expected)
        return self._cached(ref, lambda: self._make(ref, target(text, self.kind, self.expected, noun="name"), text,
                                                    None))

    def plugin(self, text: str) -> Any:
        """An entry point's object; an unknown name lists the close matches."""
        from .names import unknown_name

        key = text.strip().lower()
        found = self.plugins()
        ep = next((found[k] for k in (key, key.replace("_", "-"), key.replace("-", "_")) if k in found), None)
        if ep is None:
            raise unknown_name(self.kind, text, [*self._registered(), *found])
        dist = getattr(ep, "dist", None)
        plugin = {"entry_point": f"{self.group}: {ep.name} = {ep.value}",
                  "package": getattr(dist, "name", None), "version": getattr(dist, "version", None)}
        return self._cached(ep.name, lambda: self._make(ep.name, load_entry_point(ep, self.kind), repr(ep.name),
                                                        plugin))

    def object(self, obj: Any) -> Any:
        """A class or function given in Python."""
        ref = reference_of(obj)
        label = getattr(obj, "__qualname__", None) or repr(obj)
        if ref is None:
            ref = f"{OBJECT_PREFIX}{label}"
            with self._lock:
                if self._objects.setdefault(ref, obj) is not obj:  # two objects of one name: keep them apart
                    ref = f"{OBJECT_PREFIX}{label}@{id(obj):x}"
                    self._objects[ref] = obj
        with self._lock:
            cached = self._cache.get(ref)
            if cached is not None and cached.target is obj:
                return cached
        made = self._make(ref, obj, label, None)
        with self._lock:
            self._cache[ref] = made
        return made


def in_process_only(name: Any) -> bool:
    """Whether ``name`` is a Python object that only this process holds (``python:...``)."""
    return isinstance(name, str) and name.startswith(OBJECT_PREFIX)


def short(name: str) -> str:
    """``file.py:Name`` for a file's absolute reference, else ``name`` (for messages)."""
    if is_reference(name) and not name.startswith(OBJECT_PREFIX):
        where, _, attr = name.rpartition(":")
        if is_file(where):
            return f"{Path(where).name}:{attr}"
    return name


def summary(obj: Any) -> str:
    doc = (inspect.getdoc(obj) or "").strip()
    return doc.splitlines()[0] if doc else ""
