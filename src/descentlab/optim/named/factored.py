"""Adafactor: factored second moments, update clipping and a relative step.

adafactor = scale_by_factored_rms → clip_by_block_rms → scale_by_param_block_rms
→ scale_by_relative_step → decay_weights, which is torch.optim.Adafactor::

    β̂₂ₜ = 1 − t^beta2_decay
    V̂ₜ  = factored (ndim ≥ 2, last two dims) or full (ndim ≤ 1) running mean of g²
    U   = g / max(√V̂ₜ, ε₁);   Û = U / max(1, RMS(U)/d)
    ρₜ  = min(lr, 1/√t);       αₜ = max(ε₂, RMS(pₜ₋₁))·ρₜ
    pₜ  = pₜ₋₁ − lr·weight_decay·pₜ₋₁ − αₜ·Û

``eps = (ε₁, ε₂)`` is a pair, as in torch (ε₁ = None: the dtype's machine
epsilon). ``lr`` is not a multiplier of the step: it caps the relative step ρₜ
and scales the decoupled weight decay, as in torch.
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import (
    clip_by_block_rms,
    decay_weights,
    scale_by_factored_rms,
    scale_by_param_block_rms,
    scale_by_relative_step,
)


def _adafactor_chain():
    """Factored RMS scaling, clipping, parameter-scale relative step, decoupled decay."""
    return [
        scale_by_factored_rms(),
        clip_by_block_rms(),
        scale_by_param_block_rms(),
        scale_by_relative_step(),
        decay_weights(),
    ]


register(
    OptimizerSpec(
        name="adafactor",
        summary="Adafactor: factored (row/column) second moments, update clipping, step relative to RMS(p)",
        defaults={"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0, "weight_decay": 0.0},
        build=_adafactor_chain,
        reference="torch.optim.Adafactor",
        paper="Shazeer & Stern, 'Adafactor: Adaptive Learning Rates with Sublinear Memory Cost', ICML 2018",
    )
)
