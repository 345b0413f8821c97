"""descentlab: optimization strategies for deep-learning training, built on PyTorch.

The public names load on first use (PEP 562's module ``__getattr__``), so that
``import descentlab.optim`` — the drop-in ``torch.optim`` use — loads the
optimizer library alone, not the training loop, the workloads, the comparison
or the benchmark (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute or None for the module itself)
_LAZY = {
    "optim": ("descentlab.optim", None),
    "schedules": ("descentlab.schedules", None),
    "workloads": ("descentlab.workloads", None),
    "Trainer": ("descentlab.train", "Trainer"),
    "Workload": ("descentlab.workloads", "Workload"),
    # ``descentlab.compare(...)`` and ``descentlab.benchmark(...)`` (DESIGN.md's Python API):
    # the packages of those names, which call their functions (``compare.api.compare``,
    # ``benchmark.api.benchmark``) when called. A package, not the function, because
    # importing any of its modules makes ``descentlab.compare`` the package anyway.
    "compare": ("descentlab.compare", None),
    "benchmark": ("descentlab.benchmark", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """A public name, or a subpackage (``descentlab.tune``), imported on first use."""
    module, attribute = _LAZY.get(name, (f"descentlab.{name}", None))
    if name not in _LAZY and (name.startswith("_") or importlib.util.find_spec(module) is None):
        raise AttributeError(f"module 'descentlab' has no attribute {name!r}")
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
