"""PSGD Kron: SGD preconditioned by a Kronecker product of triangular factors
fitted online (Li 2018; Li's psgd_torch, Walters' kron_torch).

kron = add_l2_to_matrices_if_coupled → scale_by_kron → add_decayed_weights_to_matrices_if_decoupled → scale_by_lr::

    m ← μ·m + (1 − μ)·g;   m̂ = m/(1 − μᵗ)
    every 1/prob steps: Q_i ← Q_i − η·triu(AAᵀ − BBᵀ)_i·Q_i / ‖·‖   (A = m̂ ×Q, B = v ×Q⁻ᵀ, v ~ N(0, I))
    u = m̂ ×₁ Q₁ᵀQ₁ … ×_k Q_kᵀQ_k,  capped at RMS 1.1
    p ← p − lr·(u + λ·p)          (λ only for tensors of ≥ 2 dimensions)

Hyperparameters and defaults are ``pytorch_optimizer.Kron``'s (4.1.0), with its
``precondition_lr`` and ``precondition_init_scale`` group keys offered as
hyperparameters, plus ``seed`` (the per-parameter generator of the probe
vectors; see transforms/kron.py). ``weight_decay`` is decoupled unless
``weight_decouple=False``, and applies to tensors of two or more dimensions
only, as the reference. ``mu_dtype`` and ``precondition_dtype`` take a torch dtype or
its name; the default ``"float32"`` is the reference's torch.float32 by name, so
that torch.distributed.checkpoint can save the param groups. The update's RMS is capped at 1.1, so ``lr`` is
roughly the largest per-entry step, as with Adam; a few times smaller than
Adam's lr is the usual start (kron_torch suggests 3× smaller).
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import (
    add_decayed_weights_to_matrices_if_decoupled,
    add_l2_to_matrices_if_coupled,
    scale_by_kron,
    scale_by_lr,
)


def _kron_chain():
    return [
        add_l2_to_matrices_if_coupled(),
        scale_by_kron(),
        add_decayed_weights_to_matrices_if_decoupled(),
        scale_by_lr(),
    ]


register(
    OptimizerSpec(
        name="kron",
        summary="PSGD Kron: momentum preconditioned by Kronecker-factored triangular Q's fitted online",
        defaults={
            "lr": 1e-3,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "weight_decouple": True,
            "pre_conditioner_update_probability": None,
            "max_size_triangular": 8192,
            "min_ndim_triangular": 2,
            "memory_save_mode": None,
            "momentum_into_precondition_update": True,
            "mu_dtype": None,
            "precondition_dtype": "float32",
            "balance_prob": 0.01,
            "precondition_lr": 0.1,
            "precondition_init_scale": 1.0,
            "seed": 0,
        },
        build=_kron_chain,
        reference="pytorch_optimizer.Kron (4.1.0), its probe vectors drawn from the same seeded generators",
        paper=(
            "Li, 'Preconditioned Stochastic Gradient Descent', IEEE TNNLS 29(5), 2018; "
            "Li, 'Preconditioner on Matrix Lie Group for SGD', ICLR 2019"
        ),
    )
)
