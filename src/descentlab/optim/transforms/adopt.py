"""ADOPT's direction (Taniguchi et al. 2024): normalize by the *previous* second moment.

Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β₂ with the
Optimal Rate", NeurIPS 2024, Algorithm 2 (with the clipping of their
section 4). Adam's convergence failure comes from the correlation of the
current gradient with the second moment it is divided by; ADOPT divides by
the estimate from *before* this gradient, and applies momentum after the
normalization. Reference: ``pytorch_optimizer.ADOPT``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..base import Hyper, Transform, betas_pair, positive

__all__ = ["ScaleByAdopt", "scale_by_adopt"]


def _optional_exponent(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return "None or a finite number >= 0"
    return None


class ScaleByAdopt(Transform):
    """ADOPT's direction. With ``(β₁, β₂) = betas`` and step ``t``::

        t = 1:   v ← g²;  u = 0                        (no step: v has no past yet)
        t > 1:   n = clip(g / max(√v, ε), ±t^clip_exponent)
                 m ← β₁·m + (1 − β₁)·n;   u = m
                 v ← β₂·v + (1 − β₂)·g²                (after its use)

    ε bounds the denominator from below (``max``, not ``+``), as the paper's
    and the reference's code do. ``clip_exponent`` is the paper's clipping
    ``c(t) = t^{1/4}`` (the reference's ``clip_lambda=lambda t: t**0.25``, a
    callable there; a number here, so that param groups stay data); None: no
    clipping (Algorithm 1). No bias correction: none is needed (m starts
    from a normalized gradient; v from g²). State: ``exp_avg``, ``exp_avg_sq``.
    """

    hypers = {
        "betas": Hyper((0.9, 0.9999), betas_pair),
        "eps": Hyper(1e-6, positive),
        "clip_exponent": Hyper(0.25, _optional_exponent),
    }
    state_keys = ("exp_avg", "exp_avg_sq")

    def init_state(self, p, state, group):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def clip(self, group, t: int) -> float | None:
        e = self.hp(group, "clip_exponent")
        return None if e is None else math.pow(t, e)

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if t == 1:
            v.addcmul_(u, u)
            return torch.zeros_like(u)
        n = u / v.sqrt().clamp_(min=self.hp(group, "eps"))
        c = self.clip(group, t)
        if c is not None:
            n.clamp_(-c, c)
        m.lerp_(n, 1.0 - b1)
        v.mul_(b2).addcmul_(u, u, value=1.0 - b2)
        return m

    def update_foreach(self, updates, params, states, group):
        # Tensors at their first step (added late to the group) take the for-loop.
        if any(s["step"] == 1 for s in states) or len({s["step"] for s in states}) > 1:
            return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]
        b1, b2 = self.hp(group, "betas")
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        denom = torch._foreach_sqrt(vs)
        torch._foreach_clamp_min_(denom, self.hp(group, "eps"))
        n = torch._foreach_div(updates, denom)
        c = self.clip(group, states[0]["step"])
        if c is not None:
            torch._foreach_clamp_min_(n, -c)
            torch._foreach_clamp_max_(n, c)
        torch._foreach_lerp_(ms, n, 1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, updates, updates, value=1.0 - b2)
        return ms


scale_by_adopt = ScaleByAdopt
