"""ADOPT: Adam with the previous second moment and momentum after normalization
(Taniguchi et al. 2024).

adopt = add_l2_if_coupled → scale_by_adopt → add_decayed_weights_if_decoupled → scale_by_lr::

    t = 1: v ← g² (no step);   t > 1: m ← β₁·m + (1 − β₁)·clip(g/max(√v, ε), ±t^¼);  p ← p − lr·m

Hyperparameters are ``pytorch_optimizer.ADOPT``'s and its defaults, except
that its ``clip_lambda`` callable is the number ``clip_exponent`` here (None:
no clipping). ``weight_decay`` is coupled L2 unless ``weight_decouple=True``.
Not offered: ``fixed_decay``, ``stable_adamw``.
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import add_decayed_weights_if_decoupled, add_l2_if_coupled, scale_by_adopt, scale_by_lr

_DECOUPLE = {"decoupled_weight_decay": "weight_decouple"}


def _adopt_chain():
    return [
        add_l2_if_coupled(keys=_DECOUPLE),
        scale_by_adopt(),
        add_decayed_weights_if_decoupled(keys=_DECOUPLE),
        scale_by_lr(),
    ]


register(
    OptimizerSpec(
        name="adopt",
        summary="ADOPT: momentum of g/√v with the previous v, clipped at t^¼; converges for any β₂",
        defaults={
            "lr": 1e-3,
            "betas": (0.9, 0.9999),
            "clip_exponent": 0.25,
            "eps": 1e-6,
            "weight_decay": 0.0,
            "weight_decouple": False,
        },
        build=_adopt_chain,
        reference="pytorch_optimizer.ADOPT",
        paper="Taniguchi et al., 'ADOPT: Modified Adam Can Converge with Any β₂ with the Optimal Rate', NeurIPS 2024",
    )
)
