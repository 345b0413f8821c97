"""The table of built-in workloads: ``available()``, ``load(name, seed)``, ``summaries()``."""

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


def available() -> list[str]:
    """Names of the built-in workloads, in registration order."""
    return list(_REGISTRY)


def summaries() -> dict[str, str]:
    """``{name: one-line summary}``, for listings; loads no data."""
    return {name: spec.summary for name, spec in _REGISTRY.items()}


def get(name: str) -> WorkloadSpec:
    """The spec of ``name``; an unknown name raises ValueError listing close matches."""
    if not isinstance(name, str):
        raise TypeError(f"workload name must be a string, got {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise unknown_name("workload", name, _REGISTRY)


def load(name: str, seed: int = 0, data_dir: str | os.PathLike | None = None) -> Workload:
    """Build workload ``name``: its data split (and, if synthetic, drawn) from ``seed``.

    ``data_dir`` is where workloads that read files find them (``mnist-cnn``:
    the MNIST IDX files); the others ignore it. Raises ValueError for an
    unknown name (with close matches), an invalid seed, or missing data.
    """
    spec = get(name)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return spec.build(int(seed), data_dir)
