"""A package that is also its entry function: ``descentlab.compare(...)`` and
``descentlab.benchmark(...)`` (DESIGN.md's Python API) are the packages
``descentlab.compare`` and ``descentlab.benchmark``, called.

A package, not the function, because importing any of a package's modules makes
the parent's attribute the package (the import system sets it), whatever the
parent's ``__init__`` put there; so the package itself is made callable, its
``__call__`` and ``__signature__`` those of the function, imported when first
needed (``import descentlab.benchmark.score`` loads no benchmark runner).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any


def _function(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class CallablePackage(types.ModuleType):
    """A module whose call is ``__entry__`` (``"module:function"``)."""

    __entry__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _function(self.__entry__)(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(_function(self.__entry__))


def make_callable(package: str, target: str) -> None:
    """Make the (loaded) module ``package`` callable as the function ``target``."""
    module = sys.modules[package]
    module.__class__ = CallablePackage
    module.__entry__ = target
