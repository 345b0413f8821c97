"""The benchmark layer (issue 24): strategies scored across workloads as AlgoPerf scores them.

:mod:`.score` (profiles and scores from times), :mod:`.suites` (workloads with targets, budgets and
held-out variants), :mod:`.targets` (setting them from tuned baselines), :mod:`.space` (search
spaces and quasi-random trials), :mod:`.execute` (the runs on the engine's queue), :mod:`.results`
(times, intervals, speedups, tunability) and :mod:`.api` (``descentlab.benchmark(...)``).
"""

from ..entry import make_callable
from .score import benchmark_score, counted, profile, ratios, speedup


make_callable(__name__, "descentlab.benchmark.api:benchmark")

__all__ = ["benchmark_score", "counted", "profile", "ratios", "speedup"]
