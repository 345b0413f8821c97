"""The one record of the best model so far, shared by early stopping and the
best checkpoint, so that what is restored is what was saved."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class BestTracker:
    """Tracks the best value of ``monitor`` ("min" or "max") and the weights at it.

    An update counts as an improvement when it beats the best by more than
    ``min_delta`` (set by EarlyStopping). Non-finite values and models with
    non-finite weights never become the best.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0):
        self.configure(monitor, mode, min_delta)
        self.value = math.inf if mode == "min" else -math.inf
        self.step: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def configure(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"invalid mode={mode!r}: expected 'min' or 'max'")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"invalid min_delta={min_delta!r}: expected a number >= 0")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        if self.__dict__.get("step") is None:
            self.value = math.inf if mode == "min" else -math.inf

    def reset(self) -> None:
        """Forget the best so far (e.g. after a prune changed the model's tensors)."""
        self.value = math.inf if self.mode == "min" else -math.inf
        self.step, self.weights = None, None

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.value - self.min_delta
        return value > self.value + self.min_delta

    def update(self, step: int, results: Mapping[str, float], model: nn.Module) -> bool:
        """Record ``results`` at ``step``; True if it is the new best."""
        if self.monitor not in results:
            raise ValueError(
                f"the monitored value {self.monitor!r} is not among the validation results "
                f"{sorted(results)}"
            )
        value = float(results[self.monitor])
        if not self.improves(value):
            return False
        state = model.state_dict()
        if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
            return False
        self.value, self.step = value, step
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        return True

    def restore(self, model: nn.Module) -> bool:
        if self.weights is None:
            return False
        model.load_state_dict(self.weights)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "value": self.value,
            "step": self.step,
            "weights": self.weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.monitor, self.mode, self.min_delta = state["monitor"], state["mode"], state["min_delta"]
        self.value, self.step = state["value"], state["step"]
        self.weights = copy.copy(state["weights"])
