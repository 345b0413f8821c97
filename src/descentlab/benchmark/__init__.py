"""The benchmark layer (issue 24): strategies scored across workloads as AlgoPerf scores them.

So far: :mod:`.score`, the performance profiles and benchmark scores from times to target.
"""

from .score import benchmark_score, counted, profile, ratios, speedup

__all__ = ["benchmark_score", "counted", "profile", "ratios", "speedup"]
