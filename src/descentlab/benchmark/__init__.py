"""The benchmark layer (issue 24): strategies scored across workloads as AlgoPerf scores them.

:mod:`.score` (profiles and scores from times), :mod:`.suites` (workloads with targets, budgets and
held-out variants), :mod:`.targets` (setting them from tuned baselines), :mod:`.space` (search
spaces and quasi-random trials), :mod:`.execute` (the runs on the engine's queue), :mod:`.results`
(times, intervals, speedups, tunability) and :mod:`.api` (``descentlab.benchmark(...)``).
"""

import inspect
import sys
import types

from .score import benchmark_score, counted, profile, ratios, speedup


class _Package(types.ModuleType):
    """``descentlab.benchmark(...)`` is :func:`.api.benchmark` (imported when called)."""

    def __call__(self, *args, **kwargs):
        from .api import benchmark

        return benchmark(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        from .api import benchmark

        return inspect.signature(benchmark)


sys.modules[__name__].__class__ = _Package

__all__ = ["benchmark_score", "counted", "profile", "ratios", "speedup"]
