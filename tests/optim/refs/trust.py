"""References for lamb and lars.

lars: pytorch_optimizer.LARS as it is.

lamb: Algorithm 2 of the LAMB paper. No setting of pytorch_optimizer.Lamb
computes it exactly; ``_LambAlgorithm2`` below sets it as close as its options
go and adapts the three differences that remain. The options:

* ``weight_decouple=False``: λ·p is added to the Adam direction r before the
  trust ratio (True would shrink p in place instead, AdamW-style);
* ``grad_averaging=True``: m ← β₁·m + (1 − β₁)·g (False drops the 1 − β₁);
* ``rectify=False``, ``adam=False`` (True forces the ratio to 1),
  ``pre_norm=False`` (so ``max_grad_norm`` is unused);
* ``adam_debias=True``: the step size is lr (the default divides it by
  1 − β₁ᵗ, which the trust ratio does *not* cancel).

What is left, and how the adapter removes it:

1. the reference has no bias correction of m or v. Since
   m̂/(√v̂ + ε) = c⁻¹·m/(√v + ε·√(1 − β₂ᵗ)) with c = (1 − β₁ᵗ)/√(1 − β₂ᵗ), the
   adapter runs step t with eps' = ε·√(1 − β₂ᵗ) and λ' = c·λ: the reference's
   update is then c·(r̂ + λp), and the trust ratio cancels c;
2. it clamps ‖p‖ at 10 (φ(x) = min(x, 10)): the adapter sets ``clamp = inf``;
3. its ratio is ‖p‖/(‖u‖ + eps') instead of ‖p‖/‖u‖: the adapter rescales the
   reference's own step by (‖u‖ + eps')/‖u‖, from the norm the reference
   records in ``state["adam_norm"]``.
"""

import math

import torch
from pytorch_optimizer import LARS, Lamb

from ._common import Reference


class _LambAlgorithm2(Lamb):
    clamp = math.inf

    def __init__(self, params, maximize=False, **hp):
        super().__init__(
            params,
            weight_decouple=False,
            grad_averaging=True,
            rectify=False,
            adam=False,
            pre_norm=False,
            adam_debias=True,
            maximize=maximize,
            **hp,
        )

    @torch.no_grad()
    def step(self, closure=None):
        saved, before = [], {}
        for group in self.param_groups:
            t = group.get("step", 0) + 1
            b1, b2 = group["betas"]
            sqrt_bc2 = math.sqrt(1 - b2**t)
            saved.append((group["eps"], group["weight_decay"]))
            group["eps"] = group["eps"] * sqrt_bc2
            group["weight_decay"] = group["weight_decay"] * (1 - b1**t) / sqrt_bc2
            for p in group["params"]:
                if p.grad is not None:
                    before[p] = p.clone()
        loss = super().step(closure)
        for group, (eps, wd) in zip(self.param_groups, saved):
            for p in group["params"]:
                state = self.state[p]
                if p in before and state["weight_norm"] != 0 and state["adam_norm"] != 0:
                    # p − lr·‖p‖/(‖u‖ + eps')·u  →  p − lr·‖p‖/‖u‖·u
                    p.add_(p - before[p], alpha=float(group["eps"] / state["adam_norm"]))
            group["eps"], group["weight_decay"] = eps, wd
        return loss


def _lars(groups, **hp):
    return LARS(groups, **hp)


REFERENCES = {
    "lamb": Reference(
        _LambAlgorithm2,
        [
            {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-8},
            {"lr": 0.003, "weight_decay": 0.1},
            {"lr": 0.002, "betas": (0.95, 0.9), "eps": 1e-3, "weight_decay": 0.01, "maximize": True},
        ],
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
        descent={"lr": 0.02},
    ),
    "lars": Reference(
        _lars,
        [
            {"lr": 0.5, "weight_decay": 0.01},
            {"lr": 0.2, "momentum": 0.5, "dampening": 0.1, "trust_coefficient": 0.01},
            {"lr": 0.1, "nesterov": True, "weight_decay": 0.001, "trust_coefficient": 0.02},
            {"lr": 0.3, "nesterov": True, "dampening": 0.2, "weight_decay": 0.05},
            {"lr": 0.05, "momentum": 0.0, "maximize": True},
        ],
        {"momentum_buffer": "momentum_buffer"},
        descent={"lr": 1.0},
    ),
}
