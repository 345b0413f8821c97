"""Fill in the task-specific fields (loss, metric) of a :class:`Workload`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .base import Split, Workload
from .metrics import METRICS


def classification(
    name: str, description: str, *, train: Split, val: Split, test: Split,
    make_model: Callable[[], nn.Module], num_classes: int, recipe: dict[str, Any],
    lr_defaults: Mapping[str, float], seed: int, info: dict[str, Any],
) -> Workload:
    """A classification workload: cross-entropy loss, accuracy (higher is better, in [0, 1])."""
    m = METRICS["accuracy"]
    return Workload(
        name=name, description=description, task="classification",
        train=train, val=val, test=test, make_model=make_model,
        loss_fn=nn.CrossEntropyLoss(), metric=m.name, metric_fn=m.fn,
        metric_mode=m.mode, metric_range=m.range, recipe=recipe,
        lr_defaults=dict(lr_defaults), num_classes=num_classes, seed=seed, info=info,
    )


def regression(
    name: str, description: str, *, train: Split, val: Split, test: Split,
    make_model: Callable[[], nn.Module], recipe: dict[str, Any],
    lr_defaults: Mapping[str, float], seed: int, info: dict[str, Any],
) -> Workload:
    """A regression workload: mean squared error loss, R² (higher is better, in (−inf, 1])."""
    m = METRICS["r2"]
    return Workload(
        name=name, description=description, task="regression",
        train=train, val=val, test=test, make_model=make_model,
        loss_fn=nn.MSELoss(), metric=m.name, metric_fn=m.fn,
        metric_mode=m.mode, metric_range=m.range, recipe=recipe,
        lr_defaults=dict(lr_defaults), num_classes=None, seed=seed, info=info,
    )
