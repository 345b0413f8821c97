"""Sign-based directions: Lion's interpolated sign of momentum."""

from __future__ import annotations

import torch

from ..base import Hyper, Transform, betas_pair

__all__ = ["ScaleBySign", "scale_by_sign"]


class ScaleBySign(Transform):
    """Lion's direction: the sign of an interpolation of momentum and gradient.

    Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023
    (Program 1). With ``(β₁, β₂) = betas``::

        u  = sign(β₁·mₜ₋₁ + (1 − β₁)·g)      (sign(0) = 0)
        mₜ = β₂·mₜ₋₁ + (1 − β₂)·g

    Two betas because the direction interpolates with ``β₁`` but the momentum
    is tracked with ``β₂`` (and the direction uses the *old* momentum). Every
    entry of ``u`` is −1, 0 or +1, so the step size is set by ``lr`` alone.
    Reference: ``lion_pytorch.Lion`` (lucidrains/lion-pytorch), whose
    arithmetic this follows term for term (``m·β₁ + (1 − β₁)·g``, not a
    ``lerp``, so that the sign agrees even where the sum is near 0).
    State: ``exp_avg`` (zeros at the start), as lion_pytorch.
    """

    hypers = {"betas": Hyper((0.9, 0.99), betas_pair)}
    state_keys = ("exp_avg",)

    def init_state(self, p, state, group):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        m = state["exp_avg"]
        direction = m.mul(b1).add_(u, alpha=1 - b1).sign_()
        m.mul_(b2).add_(u, alpha=1 - b2)
        return direction

    def update_foreach(self, updates, params, states, group):
        b1, b2 = self.hp(group, "betas")
        ms = [s["exp_avg"] for s in states]
        direction = torch._foreach_mul(ms, b1)
        torch._foreach_add_(direction, updates, alpha=1 - b1)
        torch._foreach_sign_(direction)
        torch._foreach_mul_(ms, b2)
        torch._foreach_add_(ms, updates, alpha=1 - b2)
        return direction


scale_by_sign = ScaleBySign
