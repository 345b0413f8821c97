"""Layer-wise adaptive rate optimizers: LAMB and LARS.

lamb = scale_by_adam → add_decayed_weights → scale_by_trust_ratio → scale_by_lr
lars = scale_by_lars_trust_ratio → trace_from_zero → scale_by_lr
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import (
    add_decayed_weights,
    scale_by_adam,
    scale_by_lars_trust_ratio,
    scale_by_lr,
    scale_by_trust_ratio,
    trace_from_zero,
)


def _lamb_chain():
    """LAMB, Algorithm 2 of the paper, per parameter tensor::

        m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²
        r = (m/(1 − β₁ᵗ)) / (√(v/(1 − β₂ᵗ)) + ε) + λ·p
        p ← p − lr · ‖p‖/‖r‖ · r              (ratio 1 where ‖p‖ or ‖r‖ is 0)

    φ is the identity (no clamp of ‖p‖) and the ratio has no ε. The group
    also carries ``trust_coefficient`` (1.0, the ratio's η) and ``amsgrad``
    (False) from the transforms; LAMB's defaults do not list them.
    """
    return [scale_by_adam(), add_decayed_weights(), scale_by_trust_ratio(), scale_by_lr()]


def _lars_chain():
    """LARS as pytorch_optimizer.LARS, for each tensor with ``p.ndim > 1``::

        ratio = η·‖p‖ / (‖g‖ + λ·‖p‖)          (1 where ‖p‖ or the denominator is 0)
        b ← μ·b + (1 − τ)·ratio·(g + λ·p)      (b starts at 0)
        p ← p − lr·b                            (Nesterov: p ← p − lr·(ratio·(g + λp) + μ·b))

    Scalars and vectors skip the ratio and the weight decay (plain momentum SGD).
    """
    return [scale_by_lars_trust_ratio(), trace_from_zero(), scale_by_lr()]


register(
    OptimizerSpec(
        name="lamb",
        summary="LAMB: Adam direction plus weight decay, scaled per tensor by ‖p‖/‖r‖",
        defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0},
        build=_lamb_chain,
        reference=(
            "LAMB paper, Algorithm 2; cross-checked with pytorch_optimizer.Lamb(weight_decouple=False, "
            "adam_debias=True) adapted for bias correction, the ‖p‖ clamp and the ratio's ε"
        ),
        paper=(
            "You et al., 'Large Batch Optimization for Deep Learning: Training BERT in 76 minutes', "
            "ICLR 2020"
        ),
    )
)
register(
    OptimizerSpec(
        name="lars",
        summary="LARS: momentum SGD with a per-tensor rate η·‖p‖/(‖g‖ + λ‖p‖) for weights (ndim > 1)",
        defaults={
            "lr": 1e-3,
            "weight_decay": 0.0,
            "momentum": 0.9,
            "dampening": 0.0,
            "trust_coefficient": 1e-3,
            "nesterov": False,
        },
        build=_lars_chain,
        reference="pytorch_optimizer.LARS",
        paper="You, Gitman & Ginsburg, 'Large Batch Training of Convolutional Networks', 2017",
    )
)
