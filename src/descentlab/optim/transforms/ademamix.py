"""AdEMAMix's direction: Adam's, plus a slow momentum (Pagliardini, Ablin & Grangier 2024).

Pagliardini et al., "The AdEMAMix Optimizer: Better, Faster, Older",
arXiv 2409.03137 (ICLR 2025), Algorithm 1. A second, much slower EMA of the
gradient (β₃ ≈ 0.9999) is added to Adam's bias-corrected fast momentum, so
gradients tens of thousands of steps old still contribute; the second moment
is Adam's. Reference: ``pytorch_optimizer.AdEMAMix``, whose arithmetic this
follows (the order of operations is what makes float32 equal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..base import Hyper, Transform, nonnegative, positive, unit_interval

__all__ = ["ScaleByAdemamix", "scale_by_ademamix", "ademamix_schedules"]


def _betas3(value: Any) -> str | None:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 3
        or any(unit_interval(b) for b in value)
    ):
        return "a triple (beta1, beta2, beta3) with each beta in [0, 1)"
    return None


def _optional_steps(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        return "None or a number of steps > 0"
    return None


def ademamix_schedules(t: int, alpha: float, beta1: float, beta3: float, warmup: float | None) -> tuple[float, float]:
    """``(αₜ, β₃ₜ)`` at step ``t``: the paper's warm-ups over ``warmup`` = T_{α,β₃} steps.

    αₜ = min(t·α/T, α) (linear), and β₃ₜ = min(exp(ln β₁·ln β₃ /
    ((1 − t/T)·ln β₃ + (t/T)·ln β₁)), β₃), which moves the half-life of the slow
    EMA linearly from β₁'s to β₃'s. ``warmup=None``: no warm-up (α, β₃).
    """
    if warmup is None:
        return alpha, beta3
    a = min(t * alpha / warmup, alpha)
    lb1, lb3 = math.log(beta1), math.log(beta3)
    b3 = min(math.exp(lb1 * lb3 / ((1.0 - t / warmup) * lb3 + (t / warmup) * lb1)), beta3)
    return a, b3


class ScaleByAdemamix(Transform):
    """AdEMAMix's direction. With ``(β₁, β₂, β₃) = betas`` and step ``t``::

        m₁ ← β₁·m₁ + (1 − β₁)·g                      (fast EMA, ``exp_avg``)
        v  ← β₂·v + (1 − β₂)·g²                      (``exp_avg_sq``)
        m₂ ← β₃ₜ·m₂ + (1 − β₃ₜ)·g                    (slow EMA, ``exp_avg_slow``)
        u  = (m₁/(1 − β₁ᵗ) + αₜ·m₂) / (√v/√(1 − β₂ᵗ) + ε)

    The slow EMA is not bias-corrected (the paper's choice: it starts at zero
    and αₜ warms up). ``t_alpha_beta3`` is the warm-up length T_{α,β₃} of
    :func:`ademamix_schedules` (None: none).
    """

    hypers = {
        "betas": Hyper((0.9, 0.999, 0.9999), _betas3),
        "alpha": Hyper(5.0, nonnegative),
        "t_alpha_beta3": Hyper(None, _optional_steps),
        "eps": Hyper(1e-8, positive),
    }
    state_keys = ("exp_avg", "exp_avg_sq", "exp_avg_slow")

    def init_state(self, p, state, group):
        for key in self.state_keys:
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def scalars(self, group, t: int) -> tuple[float, float, float, float]:
        """``(1 − β₁ᵗ, √(1 − β₂ᵗ), αₜ, β₃ₜ)`` (also used by the fused kernel)."""
        b1, b2, b3 = self.hp(group, "betas")
        alpha_t, beta3_t = ademamix_schedules(t, self.hp(group, "alpha"), b1, b3, self.hp(group, "t_alpha_beta3"))
        return 1.0 - b1**t, math.sqrt(1.0 - b2**t), alpha_t, beta3_t

    def update_tensor(self, u, p, state, group):
        b1, b2, _ = self.hp(group, "betas")
        bc1, bc2, alpha_t, beta3_t = self.scalars(group, state["step"])
        m1, v, m2 = state["exp_avg"], state["exp_avg_sq"], state["exp_avg_slow"]
        m1.lerp_(u, 1.0 - b1)
        v.mul_(b2).addcmul_(u, u, value=1.0 - b2)
        m2.lerp_(u, 1.0 - beta3_t)
        denom = v.sqrt().div_(bc2).add_(self.hp(group, "eps"))
        return m1.div(bc1).add_(m2, alpha=alpha_t).div_(denom)

    def update_foreach(self, updates, params, states, group):
        b1, b2, _ = self.hp(group, "betas")
        m1s = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        m2s = [s["exp_avg_slow"] for s in states]
        scalars = [self.scalars(group, s["step"]) for s in states]
        torch._foreach_lerp_(m1s, updates, 1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, updates, updates, value=1.0 - b2)
        for m2, u, sc in zip(m2s, updates, scalars):  # β₃ₜ may differ per tensor (its own step)
            m2.lerp_(u, 1.0 - sc[3])
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [sc[1] for sc in scalars])
        torch._foreach_add_(denom, self.hp(group, "eps"))
        out = torch._foreach_div(m1s, [sc[0] for sc in scalars])
        for o, m2, sc in zip(out, m2s, scalars):
            o.add_(m2, alpha=sc[2])
        torch._foreach_div_(out, denom)
        return out


scale_by_ademamix = ScaleByAdemamix
