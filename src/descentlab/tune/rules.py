"""Reading a learning-rate range test: from the curve (lr, loss) to one lr.

A range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks", §3.3) trains for a few steps while the lr grows exponentially and
records the loss. The curve is flat while the lr is too small to matter, falls
where the lr is useful, and rises once steps get too large. Every rule here
reads the *debiased* exponential moving average of the loss (``smoothed``,
:func:`smooth`); some also look at the raw losses.

Rules (each ``rule(lrs, smoothed, raw) -> lr``):

``valley``
    fastai's default since 2.5 (Z. Mueller, fastai PR #3377): the longest
    strictly decreasing subsequence of the smoothed curve marks the valley;
    the suggestion sits a half of the way through its middle third
    (start + ⌊len/3⌋ + ⌊len/6⌋).
``steepest``
    torch-lr-finder's suggestion: the steepest descent of the smoothed loss
    against log lr (the most negative ``np.gradient``), skipping the first 10
    and the last 5 points.
``minimum``
    fastai's ``lr_min``: the lr of the lowest smoothed loss, divided by 10.
``centered``
    This project's (see BENCHMARKS.md, "lr-find"): the smoothed EMA lags the
    lr by about ``1/(1-β)`` steps, so its minimum sits late; this rule smooths
    the *raw* losses with a centred (zero-lag) window of ±1/4 decade, takes the
    lr of its minimum — the edge where steps start to hurt — and divides by
    ``EDGE_FACTOR``.

Which rule is the default was decided by measurement against grid searches
(benchmarks/lr_find_quality.py): see :data:`DEFAULT_RULE` and BENCHMARKS.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Rule = Callable[[Sequence[float], Sequence[float], Sequence[float]], float]

#: the centred rule divides the lr at the centred curve's minimum by this
EDGE_FACTOR = 3.0


def smooth(raw: Sequence[float], beta: float = 0.98) -> list[float]:
    """The debiased exponential moving average of ``raw`` (Adam's bias correction:
    ``avg_t / (1 - β^t)``), as fastai and torch-lr-finder plot it."""
    out, avg = [], 0.0
    for t, value in enumerate(raw, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta**t))
    return out


def valley(lrs: Sequence[float], smoothed: Sequence[float], raw: Sequence[float]) -> float:
    n = len(smoothed)
    length = [1] * n  # length of the longest decreasing subsequence ending at i
    start = list(range(n))
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    begin = start[end]
    third = (end - begin) / 3
    return float(lrs[begin + int(third) + int(third / 2)])


def steepest(lrs: Sequence[float], smoothed: Sequence[float], raw: Sequence[float],
             skip_start: int = 10, skip_end: int = 5) -> float:
    if len(smoothed) <= skip_start + skip_end + 2:
        skip_start, skip_end = 0, 0
    ys = np.asarray(smoothed[skip_start:len(smoothed) - skip_end], dtype=float)
    xs = np.log10(np.asarray(lrs[skip_start:len(lrs) - skip_end], dtype=float))
    return float(10 ** xs[int(np.argmin(np.gradient(ys, xs)))])


def minimum(lrs: Sequence[float], smoothed: Sequence[float], raw: Sequence[float]) -> float:
    return float(lrs[int(np.argmin(smoothed))]) / 10


def centered_curve(lrs: Sequence[float], raw: Sequence[float], half_width: float = 0.25) -> np.ndarray:
    """The raw losses averaged over a centred window of ±``half_width`` decades of lr."""
    x = np.log10(np.asarray(lrs, dtype=float))
    y = np.asarray(raw, dtype=float)
    return np.array([y[np.abs(x - xi) <= half_width].mean() for xi in x])


def centered(lrs: Sequence[float], smoothed: Sequence[float], raw: Sequence[float]) -> float:
    return float(lrs[int(np.argmin(centered_curve(lrs, raw)))]) / EDGE_FACTOR


RULES: dict[str, Rule] = {"valley": valley, "steepest": steepest, "minimum": minimum, "centered": centered}
#: decided by benchmarks/lr_find_quality.py (BENCHMARKS.md, "lr-find")
DEFAULT_RULE = "centered"


def get(name: str) -> Rule:
    if name not in RULES:
        raise ValueError(f"invalid rule={name!r}: expected one of {', '.join(RULES)}")
    return RULES[name]


def geometric_median(values: Sequence[float]) -> float:
    """The median of positive values on a log scale (the suggestion across sweeps)."""
    logs = sorted(math.log(v) for v in values)
    n = len(logs)
    mid = logs[n // 2] if n % 2 else (logs[n // 2 - 1] + logs[n // 2]) / 2
    return math.exp(mid)
