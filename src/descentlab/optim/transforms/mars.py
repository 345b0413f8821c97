"""MARS's direction (Yuan et al. 2024): variance-reduced momentum, then Adam's or Lion's scaling.

Yuan, Liu, Wu, Zhou, Gu, "MARS: Unleashing the Power of Variance Reduction for
Training Large Models", arXiv 2411.10438 (ICML 2025), Algorithm 1 and the
approximate form of their section 3 (the gradient difference is taken between
consecutive mini-batches, so one gradient per step suffices). Reference:
``pytorch_optimizer.MARS``.
"""

from __future__ import annotations

import math

import torch

from .. import sharded
from ..base import Hyper, Transform, betas_pair, boolean, nonnegative, one_of, positive

__all__ = ["ScaleByMars", "scale_by_mars"]


class ScaleByMars(Transform):
    """MARS's direction. With ``(β₁, β₂) = betas``, step ``t`` and the previous
    gradient ``g₋`` (``last_grad``, zero at first)::

        c = g + γ·β₁/(1 − β₁)·(g − g₋);   c ← c/‖c‖ if ‖c‖ > 1   (variance reduction, clipped)
        m ← β₁·m + (1 − β₁)·c
        mars_type "adamw":  v ← β₂·v + (1 − β₂)·c²
                            u = m / ((√v + ε)/√(1 − β₂ᵗ)·(1 − β₁ᵗ))
        mars_type "lion":   u = sign(m)
        g₋ ← g

    ‖·‖ is the whole tensor's Frobenius norm (all-reduced over FSDP2 shards).
    Where the group's ``use_mars`` is False (MARS's 1-D parameters, see
    ``named/mars.py``) c = g: no correction, no clipping, and the "adamw"
    scaling. ``ams_bound``: v is replaced by its running maximum in the
    denominator. ε is added to √v *before* the bias correction (the
    reference's placement, unlike Adam's). State: ``exp_avg``,
    ``exp_avg_sq``, ``last_grad`` (and ``max_exp_avg_sq``).
    """

    hypers = {
        "betas": Hyper((0.95, 0.99), betas_pair),
        "gamma": Hyper(0.025, nonnegative),
        "mars_type": Hyper("adamw", one_of("adamw", "lion")),
        "ams_bound": Hyper(False, boolean),
        "eps": Hyper(1e-8, positive),
        "use_mars": Hyper(True, boolean),
    }
    state_keys = ("exp_avg", "exp_avg_sq", "last_grad", "max_exp_avg_sq")

    def init_state(self, p, state, group):
        for key in ("exp_avg", "exp_avg_sq", "last_grad"):
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if self.hp(group, "ams_bound"):
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _corrections(self, updates, states, group) -> list[torch.Tensor]:
        if not self.hp(group, "use_mars"):
            return list(updates)
        b1, _ = self.hp(group, "betas")
        factor = self.hp(group, "gamma") * (b1 / (1.0 - b1))
        cs = [(u - s["last_grad"]).mul_(factor).add_(u) for u, s in zip(updates, states)]
        # torch.norm where the tensor is whole (the reference's op); on FSDP2 shards
        # the squares are summed over the shards.
        norms = [torch.linalg.vector_norm(c) if sharded.sharding(s) is None else c.square().sum()
                 for c, s in zip(cs, states)]
        norms = sharded.all_reduce_sum(norms, states)
        for c, s, norm in zip(cs, states, norms):
            if sharded.sharding(s) is not None:
                norm = norm.sqrt()
            if norm > 1.0:
                c.div_(norm)
        return cs

    def update(self, updates, params, states, group, foreach):
        b1, b2 = self.hp(group, "betas")
        cs = self._corrections(updates, states, group)
        lion = self.hp(group, "use_mars") and self.hp(group, "mars_type") == "lion"
        out = []
        for u, c, state in zip(updates, cs, states):
            m = state["exp_avg"]
            m.lerp_(c, 1.0 - b1)
            if lion:
                out.append(m.sign())
            else:
                t = state["step"]
                v = state["exp_avg_sq"]
                v.mul_(b2).addcmul_(c, c, value=1.0 - b2)
                if self.hp(group, "ams_bound"):
                    torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    v = state["max_exp_avg_sq"]
                denom = v.add(1e-15).sqrt_().add_(self.hp(group, "eps"))
                denom.div_(math.sqrt(1.0 - b2**t)).mul_(1.0 - b1**t)
                out.append(m.div(denom))
            state["last_grad"].copy_(u)
        return out


scale_by_mars = ScaleByMars
