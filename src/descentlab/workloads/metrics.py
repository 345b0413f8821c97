"""Evaluation metrics of the workloads: ``metric_fn(outputs, targets) -> float``.

Each metric is computed over a whole split at once (concatenate the batches'
outputs first): accuracy is then the same as a batch-size-weighted mean of
per-batch accuracies, R² is not.

===========  ===============================  ======  ================
name         formula                          mode    range
===========  ===============================  ======  ================
accuracy     mean(argmax(outputs) == targets)  max     [0, 1]
r2           1 − Σ(y − ŷ)² / Σ(y − ȳ)²         max     (−inf, 1]
mse          mean((y − ŷ)²)                    min     [0, inf)
loss         the mean evaluation loss          min     (−inf, inf)
perplexity   exp(mean evaluation loss)         min     [1, inf)
bpc          mean evaluation loss / ln 2       min     [0, inf)
===========  ===============================  ======  ================

``loss`` and ``perplexity`` are computed from the evaluation loss (the
example-weighted mean of the loss over a split's batches), not from the
outputs: they work for models that return their own loss. ``perplexity`` is
exp of a mean cross-entropy in nats (a language model's per-token loss).
A user's own metric is a callable ``fn(outputs, targets) -> float`` with its
direction (:func:`resolve_metric`).

R² is scikit-learn's ``r2_score`` (coefficient of determination): 1 is a
perfect fit, 0 is as good as predicting the mean of the targets, and it is
unbounded below. Where the targets are constant, R² is 1 for a perfect fit
and 0 otherwise (scikit-learn's ``force_finite`` convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of rows whose largest logit is the target class (0 for no rows)."""
    if outputs.ndim != 2:
        raise ValueError(f"accuracy expects outputs of shape (N, classes), got {tuple(outputs.shape)}")
    if targets.shape != outputs.shape[:1]:
        raise ValueError(
            f"accuracy expects targets of shape ({outputs.shape[0]},), got {tuple(targets.shape)}"
        )
    if targets.numel() == 0:
        return 0.0
    return (outputs.argmax(dim=1) == targets).float().mean().item()


def _flat_pair(outputs: Tensor, targets: Tensor, metric: str) -> tuple[Tensor, Tensor]:
    # Regression models may emit (N,) or (N, 1); compare element for element.
    y_hat = outputs.detach().reshape(-1).double()
    y = targets.detach().reshape(-1).double()
    if y_hat.shape != y.shape:
        raise ValueError(
            f"{metric} expects outputs and targets with the same number of elements, "
            f"got {tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    return y_hat, y


def r2(outputs: Tensor, targets: Tensor) -> float:
    """Coefficient of determination, 1 − SSE/SST (as sklearn.metrics.r2_score)."""
    y_hat, y = _flat_pair(outputs, targets, "r2")
    if y.numel() == 0:
        return 0.0
    sse = torch.sum((y - y_hat) ** 2).item()
    sst = torch.sum((y - y.mean()) ** 2).item()
    if sst == 0.0:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


def mse(outputs: Tensor, targets: Tensor) -> float:
    """Mean squared error."""
    y_hat, y = _flat_pair(outputs, targets, "mse")
    if y.numel() == 0:
        return 0.0
    return torch.mean((y - y_hat) ** 2).item()


def loss(mean_loss: float) -> float:
    """The mean evaluation loss itself."""
    return float(mean_loss)


def perplexity(mean_loss: float) -> float:
    """exp(mean cross-entropy in nats); inf where that overflows."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


def bpc(mean_loss: float) -> float:
    """Bits per character: a mean cross-entropy in nats per character, in bits."""
    return float(mean_loss) / math.log(2)


# Metrics computed from the mean evaluation loss rather than (outputs, targets):
# the Trainer calls these with the loss (see Trainer.evaluate).
loss.from_loss = True  # type: ignore[attr-defined]
perplexity.from_loss = True  # type: ignore[attr-defined]
bpc.from_loss = True  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Metric:
    """A metric with its direction and the range a target may be chosen from."""

    name: str
    fn: Callable[..., float]
    mode: str  # "max": higher is better; "min": lower is better
    range: tuple[float, float]


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, "max", (0.0, 1.0)),
    "r2": Metric("r2", r2, "max", (-math.inf, 1.0)),
    "mse": Metric("mse", mse, "min", (0.0, math.inf)),
    "loss": Metric("loss", loss, "min", (-math.inf, math.inf)),
    "perplexity": Metric("perplexity", perplexity, "min", (1.0, math.inf)),
    "bpc": Metric("bpc", bpc, "min", (0.0, math.inf)),
}


def resolve_metric(metric: Any, fn: Any = None, mode: str | None = None,
                   range_: tuple[float, float] | None = None, *, where: str = "workload") -> Metric:
    """A workload's metric from its name (accuracy, r2, mse, loss, perplexity)
    or a callable; ``mode`` ("max"/"min") is required for a callable and may
    override a built-in's; errors name the value and what was expected."""
    if isinstance(metric, str):
        key = metric.strip().lower()
        if fn is not None:  # a named metric with its own function (the built-ins pass both)
            if not callable(fn):
                raise TypeError(f"{where}: metric_fn must be callable, got {fn!r}")
            base = METRICS.get(key)
            mode = mode or (base.mode if base else None)
            if mode is None:
                raise ValueError(f"{where}: metric {metric!r} with its own metric_fn needs metric_mode='max' or 'min'")
            return _checked(Metric(key, fn, mode, range_ or (base.range if base else (-math.inf, math.inf))), where)
        if key not in METRICS:
            from ..names import unknown_name

            raise unknown_name("metric", metric, METRICS)
        base = METRICS[key]
        return _checked(Metric(base.name, base.fn, mode or base.mode, range_ or base.range), where)
    if callable(metric):
        if mode is None:
            raise ValueError(
                f"{where}: a callable metric needs its direction: metric_mode='max' (higher is better) or 'min'"
            )
        name = getattr(metric, "__name__", "metric")
        name = "metric" if name == "<lambda>" else name
        return _checked(Metric(name, metric, mode, range_ or (-math.inf, math.inf)), where)
    raise TypeError(f"{where}: metric must be a name ({', '.join(METRICS)}) or a callable, got {metric!r}")


def _checked(m: Metric, where: str) -> Metric:
    if m.mode not in ("max", "min"):
        raise ValueError(f"{where}: metric_mode must be 'max' or 'min', got {m.mode!r}")
    lo, hi = m.range
    if not lo <= hi:
        raise ValueError(f"{where}: metric_range must be (low, high) with low <= high, got {m.range!r}")
    return m
