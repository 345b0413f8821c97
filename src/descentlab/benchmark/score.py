"""Performance profiles and benchmark scores from times to target (AlgoPerf's rules).

Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms", section 4.5; Dolan & Moré
2002, "Benchmarking optimization software with performance profiles".

* A strategy's time on a workload is its time to the validation target, ``None`` (∞) for a miss
  within the budget; it counts only if the strategy also reaches the workload's held-out
  variant's target (:func:`counted`).
* ``r = t / t_best``, ``t_best`` the fastest strategy's time on that workload (:func:`ratios`);
  a workload no strategy reached gives every strategy r = ∞.
* ``ρ(τ)`` = the fraction of workloads with ``r ≤ τ`` (:func:`profile`).
* The benchmark score is ``(1 / (τmax − 1)) ∫₁^τmax ρ(τ) dτ`` with τmax = 4. ρ is a step
  function, so the integral is exact: a workload with ratio r adds ``(τmax − max(r, 1)) / n``
  when r ≤ τmax, else nothing (:func:`benchmark_score`). AlgoPerf approximates it on a grid of τ.
* The speedup against a baseline is the geometric mean over workloads of ``t_base / t``, a miss
  counted as the workload's budget (:func:`speedup`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

TAU_MAX = 4.0
Times = Mapping[str, Mapping[str, float | None]]  # strategy -> workload -> time (None: missed)


def counted(base: float | None, heldout: float | None) -> float | None:
    """The base workload's time, or None when the held-out variant's target was missed."""
    return None if heldout is None else base


def ratios(times: Times) -> dict[str, dict[str, float]]:
    """``r = t / t_best`` per strategy and workload (``math.inf`` for a miss, or where no
    strategy reached the target)."""
    workloads = sorted({w for per in times.values() for w in per})
    best = {}
    for w in workloads:
        reached = [per[w] for per in times.values() if per.get(w) is not None]
        for t in reached:
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                raise ValueError(f"invalid time {t!r} on workload {w!r}: expected a finite number > 0 or None")
        best[w] = min(reached) if reached else None
    return {s: {w: (per[w] / best[w] if per.get(w) is not None and best[w] is not None else math.inf)
                for w in workloads} for s, per in times.items()}


def profile(r: Sequence[float], tau: float) -> float:
    """ρ(τ): the fraction of the ratios ``r`` (one per workload) that are ≤ τ."""
    return sum(x <= tau for x in r) / len(r) if r else 0.0


def benchmark_score(r: Sequence[float], tau_max: float = TAU_MAX) -> float:
    """``(1 / (τmax − 1)) ∫₁^τmax ρ(τ) dτ``, exactly, for one strategy's ratios ``r``."""
    if not tau_max > 1:
        raise ValueError(f"invalid tau_max={tau_max!r}: expected > 1")
    if not r:
        return 0.0
    area = sum(tau_max - max(x, 1.0) for x in r if x <= tau_max)
    return area / (len(r) * (tau_max - 1))


def speedup(times: Times, baseline: str, budgets: Mapping[str, float]) -> dict[str, float]:
    """The geometric mean over workloads of ``t_baseline / t`` for each strategy, a miss
    counted as the workload's budget (so a strategy that misses where the baseline does
    too is even there)."""
    if baseline not in times:
        raise ValueError(f"invalid baseline={baseline!r}: expected one of {', '.join(sorted(times))}")

    def t(strategy: str, w: str) -> float:
        value = times[strategy].get(w)
        return float(budgets[w]) if value is None else float(value)

    workloads = sorted(budgets)
    return {s: math.exp(sum(math.log(t(baseline, w) / t(s, w)) for w in workloads) / len(workloads))
            for s in times}
