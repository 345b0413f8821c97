"""Comparing strategies side by side: equal budgets, time-to-target, a report.

``descentlab.compare(workload, strategies, ...)`` (:func:`.api.compare`) is the
Python entry point; the ``descentlab compare`` command is a thin layer over it.
The top-level name ``descentlab.compare`` is this package, and calling it calls
that function; import the package's parts as ``from descentlab.compare import
run_comparison``.
"""

from ..entry import make_callable
from .api import ComparisonResult, compare
from .runner import run_comparison, time_to_target
from .strategy import Strategy, coerce, from_file, from_names


make_callable(__name__, "descentlab.compare.api:compare")

__all__ = ["ComparisonResult", "Strategy", "coerce", "compare", "from_file", "from_names", "run_comparison",
           "time_to_target"]
