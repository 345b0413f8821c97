"""The table of workloads: ``available()``, ``load(name, seed)``, ``summaries()``.

Names are the built-ins, then those that installed packages add through the
entry-point group ``descentlab.workloads`` (a built-in name wins). ``load``
also takes a user's factory, ``path/to/file.py:FUNC`` or
``package.module:FUNC`` (see :mod:`.user`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..names import unknown_name
from .base import Workload

Builder = Callable[[int, "str | os.PathLike | None"], Workload]


@dataclass(frozen=True)
class WorkloadSpec:
    """A registered workload: its name, a one-line summary (without loading any
    data), and ``build(seed, data_dir) -> Workload``."""

    name: str
    summary: str
    build: Builder
    needs_data_dir: bool = False


_REGISTRY: dict[str, WorkloadSpec] = {}


def register(name: str, summary: str, *, needs_data_dir: bool = False) -> Callable[[Builder], Builder]:
    """Decorator adding ``build(seed, data_dir)`` to the table under ``name``."""

    def add(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"workload {name!r} is registered twice")
        _REGISTRY[name] = WorkloadSpec(name, summary, build, needs_data_dir)
        return build

    return add


def _plugins() -> dict:
    from .user import entry_points

    return {name: ep for name, ep in entry_points().items() if name not in _REGISTRY}


def available() -> list[str]:
    """Names of the built-in workloads, in registration order, then the installed packages'."""
    return [*_REGISTRY, *_plugins()]


def summaries() -> dict[str, str]:
    """``{name: one-line summary}``, for listings; loads no data."""
    from .user import entry_point_summary

    out = {name: spec.summary for name, spec in _REGISTRY.items()}
    out.update({name: entry_point_summary(ep) for name, ep in _plugins().items()})
    return out


def get(name: str) -> WorkloadSpec:
    """The spec of ``name``; an unknown name raises ValueError listing close matches."""
    if not isinstance(name, str):
        raise TypeError(f"workload name must be a string, got {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    plugin = _plugins().get(key)
    if plugin is not None:
        from .user import load_entry_point

        return WorkloadSpec(key, plugin.value, lambda seed, data_dir: load_entry_point(plugin, seed, data_dir))
    raise unknown_name("workload", name, available())


def load(name: str, seed: int = 0, data_dir: str | os.PathLike | None = None) -> Workload:
    """Build workload ``name``: its data split (and, if synthetic, drawn) from ``seed``.

    ``name`` is a registered name or a user's factory, ``path/to/file.py:FUNC``
    or ``package.module:FUNC`` (importing it runs the user's code; see
    :mod:`.user`). ``data_dir`` is where workloads that read files find them
    (``mnist-cnn``: the MNIST IDX files); the others ignore it. Raises
    ValueError for an unknown name (with close matches), an invalid seed, or
    missing data, and UsageError for a user factory that cannot be loaded.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    from .user import is_reference, load_reference

    if is_reference(name):
        return load_reference(name, int(seed), data_dir)
    return get(name).build(int(seed), data_dir)


def resolve(workload, seed: int = 0, data_dir: str | os.PathLike | None = None) -> Workload:
    """A :class:`Workload` from a name or reference (:func:`load`), a Workload
    (returned as is), or a factory ``fn(seed=...)`` (called)."""
    if isinstance(workload, Workload):
        return workload
    if isinstance(workload, str):
        return load(workload, seed=seed, data_dir=data_dir)
    if callable(workload):
        from .user import call

        return call(workload, int(seed), data_dir, getattr(workload, "__qualname__", repr(workload)))
    raise TypeError(f"workload must be a name, a Workload or a factory, got {workload!r}")
