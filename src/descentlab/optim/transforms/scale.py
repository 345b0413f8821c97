"""Scaling transforms: the learning rate and constant factors."""

from __future__ import annotations

import torch

from ..base import Hyper, Transform, finite_number, learning_rate

__all__ = ["ScaleByLr", "Scale", "scale_by_lr", "scale"]


class ScaleByLr(Transform):
    """``u ← -lr · u``: turns a descent direction into the step added to the params.

    Usually the last transform of a chain. ``lr`` is read from the param group
    on every step, so learning-rate schedulers take effect at once.
    """

    hypers = {"lr": Hyper(1e-3, learning_rate)}

    def update_tensor(self, u, p, state, group):
        return u.mul(-self.hp(group, "lr"))

    def update_foreach(self, updates, params, states, group):
        return torch._foreach_mul(updates, -self.hp(group, "lr"))


class Scale(Transform):
    """``u ← factor · u`` with a constant factor."""

    hypers = {"factor": Hyper(1.0, finite_number)}

    def update_tensor(self, u, p, state, group):
        return u.mul(self.hp(group, "factor"))

    def update_foreach(self, updates, params, states, group):
        return torch._foreach_mul(updates, self.hp(group, "factor"))


scale_by_lr = ScaleByLr
scale = Scale
