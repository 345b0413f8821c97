"""AdEMAMix: Adam plus a slow gradient EMA (Pagliardini et al. 2024).

ademamix = add_l2_if_coupled → scale_by_ademamix → add_decayed_weights_if_decoupled → scale_by_lr::

    u = (m₁/(1 − β₁ᵗ) + αₜ·m₂) / (√v/√(1 − β₂ᵗ) + ε);   p ← p − lr·u

Hyperparameters are ``pytorch_optimizer.AdEMAMix``'s, with its defaults
(the paper's β₃ = 0.9999, α = 5). ``weight_decay`` is coupled L2 unless
``weight_decouple=True`` (then ``p ← (1 − lr·wd)·p``), as there. Not
offered: the reference's ``fixed_decay`` (decay not scaled by lr; not in the
paper) and ``stable_adamw``. ``cautious=True`` (every optimizer's, see
``transforms/cautious.py``) masks the whole direction; the reference masks
only the fast momentum, so the two differ there.
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import add_decayed_weights_if_decoupled, add_l2_if_coupled, scale_by_ademamix, scale_by_lr

_DECOUPLE = {"decoupled_weight_decay": "weight_decouple"}


def _ademamix_chain():
    return [
        add_l2_if_coupled(keys=_DECOUPLE),
        scale_by_ademamix(),
        add_decayed_weights_if_decoupled(keys=_DECOUPLE),
        scale_by_lr(),
    ]


register(
    OptimizerSpec(
        name="ademamix",
        summary="AdEMAMix: Adam's step plus α × a slow (β₃ = 0.9999) gradient EMA",
        defaults={
            "lr": 1e-3,
            "betas": (0.9, 0.999, 0.9999),
            "alpha": 5.0,
            "t_alpha_beta3": None,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "weight_decouple": False,
        },
        build=_ademamix_chain,
        reference="pytorch_optimizer.AdEMAMix",
        paper="Pagliardini, Ablin & Grangier, 'The AdEMAMix Optimizer: Better, Faster, Older', ICLR 2025",
    )
)
