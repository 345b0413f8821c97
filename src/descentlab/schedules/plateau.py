"""Reduce the learning rate when a monitored metric stops improving.

The one schedule that depends on more than the step: its state (best metric,
bad-step count, cooldown, current lrs) is a value, and :func:`plateau_step` is
a pure function from the old state and a new metric to the new state.

Rule (torch.optim.lr_scheduler.ReduceLROnPlateau, same arithmetic, so the lrs
equal torch's exactly): a metric is an improvement if it beats the best by the
threshold (``mode="min"``, ``threshold_mode="rel"``: ``metric < best · (1 −
threshold)``; ``"abs"``: ``metric < best − threshold``; mirrored for
``"max"``). After more than ``patience`` steps without improvement, each lr
becomes ``max(lr · factor, min_lr)`` (unless that changes it by no more than
``eps``), the bad-step count resets, and the next ``cooldown`` steps count no
bad steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any


#: the settings of the rule besides the per-group ``min_lr``
RULE_SETTINGS = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")


@dataclass(frozen=True)
class PlateauState:
    """What the plateau rule remembers of the metric history."""

    lrs: tuple[float, ...]
    best: float
    num_bad_steps: int = 0
    cooldown_counter: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs),
            "best": self.best,
            "num_bad_steps": self.num_bad_steps,
            "cooldown_counter": self.cooldown_counter,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PlateauState:
        return cls(
            lrs=tuple(float(x) for x in state["lrs"]),
            best=float(state["best"]),
            num_bad_steps=int(state["num_bad_steps"]),
            cooldown_counter=int(state["cooldown_counter"]),
        )


def plateau_init(lrs: Sequence[float], mode: str = "min") -> PlateauState:
    """The state before any metric: the worst possible best, the initial lrs."""
    return PlateauState(lrs=tuple(float(x) for x in lrs), best=math.inf if mode == "min" else -math.inf)


def is_better(metric: float, best: float, *, mode: str, threshold: float, threshold_mode: str) -> bool:
    if mode == "min" and threshold_mode == "rel":
        return metric < best * (1.0 - threshold)
    if mode == "min":
        return metric < best - threshold
    if threshold_mode == "rel":
        return metric > best * (threshold + 1.0)
    return metric > best + threshold


def plateau_step(
    state: PlateauState,
    metric: float,
    *,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: Sequence[float] = (0.0,),
    eps: float = 1e-8,
) -> PlateauState:
    """The state after observing ``metric``; ``min_lr`` has one entry per param group."""
    current = float(metric)
    best, bad, cooling = state.best, state.num_bad_steps, state.cooldown_counter
    if is_better(current, best, mode=mode, threshold=threshold, threshold_mode=threshold_mode):
        best, bad = current, 0
    else:
        bad += 1
    if cooling > 0:
        cooling -= 1
        bad = 0  # bad steps during cooldown do not count
    lrs = state.lrs
    if bad > patience:
        lrs = tuple(_reduced(lr, floor, factor, eps) for lr, floor in zip(lrs, min_lr, strict=True))
        cooling, bad = cooldown, 0
    return replace(state, lrs=lrs, best=best, num_bad_steps=bad, cooldown_counter=cooling)


def _reduced(lr: float, floor: float, factor: float, eps: float) -> float:
    new = max(lr * factor, floor)
    return new if lr - new > eps else lr
