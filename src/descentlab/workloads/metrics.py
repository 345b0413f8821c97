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
===========  ===============================  ======  ================

R² is scikit-learn's ``r2_score`` (coefficient of determination): 1 is a
perfect fit, 0 is as good as predicting the mean of the targets, and it is
unbounded below. Where the targets are constant, R² is 1 for a perfect fit
and 0 otherwise (scikit-learn's ``force_finite`` convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Metric:
    """A metric with its direction and the range a target may be chosen from."""

    name: str
    fn: Callable[[Tensor, Tensor], float]
    mode: str  # "max": higher is better; "min": lower is better
    range: tuple[float, float]


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, "max", (0.0, 1.0)),
    "r2": Metric("r2", r2, "max", (-math.inf, 1.0)),
    "mse": Metric("mse", mse, "min", (0.0, math.inf)),
}
