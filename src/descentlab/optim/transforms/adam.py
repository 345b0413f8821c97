"""Adam's moment estimates (Kingma & Ba, ICLR 2015), with AMSGrad."""

from __future__ import annotations

import math

import torch

from ..base import Hyper, Transform, betas_pair, boolean, positive

__all__ = ["ScaleByAdam", "scale_by_adam"]


class ScaleByAdam(Transform):
    """Adam's bias-corrected direction.

    With ``(β₁, β₂) = betas`` and step ``t``::

        mₜ = β₁·mₜ₋₁ + (1 − β₁)·g
        vₜ = β₂·vₜ₋₁ + (1 − β₂)·g²
        v̂ₜ = max(v̂ₜ₋₁, vₜ) if amsgrad else vₜ      (Reddi et al., ICLR 2018)
        u  = (mₜ / (1 − β₁ᵗ)) / (√v̂ₜ / √(1 − β₂ᵗ) + ε)

    This is the form torch.optim.Adam implements: ε is added *after* the bias
    correction of √v (Algorithm 1 of the paper), not the "ε-hat" form of the
    paper's section 2, and both moments are bias-corrected — the form often
    written without bias correction is not what any reference does.
    State: ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq``), as torch.
    """

    hypers = {
        "betas": Hyper((0.9, 0.999), betas_pair),
        "eps": Hyper(1e-8, positive),
        "amsgrad": Hyper(False, boolean),
    }
    state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def init_state(self, p, state, group):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if self.hp(group, "amsgrad"):
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        eps, t = self.hp(group, "eps"), state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(u, 1 - b1)
        v.mul_(b2).addcmul_(u, u, value=1 - b2)
        if self.hp(group, "amsgrad"):
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
        return (m / (1 - b1**t)).div_(denom)

    def update_foreach(self, updates, params, states, group):
        b1, b2 = self.hp(group, "betas")
        eps = self.hp(group, "eps")
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        steps = [s["step"] for s in states]
        torch._foreach_lerp_(ms, updates, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, updates, updates, value=1 - b2)
        if self.hp(group, "amsgrad"):
            maxes = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(maxes, vs)
            vs = maxes
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(1 - b2**t) for t in steps])
        torch._foreach_add_(denom, eps)
        out = torch._foreach_div(ms, [1 - b1**t for t in steps])
        torch._foreach_div_(out, denom)
        return out


scale_by_adam = ScaleByAdam
