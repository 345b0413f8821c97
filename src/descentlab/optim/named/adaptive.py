"""The adaptive family: Adagrad, RMSprop, Adadelta, Adamax, NAdam, RAdam.

Each is ``[weight decay] → scale_by_<name> → scale_by_lr`` and equals its
torch.optim namesake step for step. ``weight_decay`` is coupled L2 (``add_l2``,
added to the gradient) for all of them, as in torch; NAdam and RAdam also take
``decoupled_weight_decay=True``, which turns it into AdamW-style decay
``p ← (1 − lr·wd)·p`` (NAdamW, RAdamW).
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import (
    add_decayed_weights_if_decoupled,
    add_l2,
    add_l2_if_coupled,
    scale_by_adadelta,
    scale_by_adagrad,
    scale_by_adamax,
    scale_by_lr,
    scale_by_nadam,
    scale_by_radam,
    scale_by_rms,
    trace,
)

_BETAS = (0.9, 0.999)


def _adagrad_chain():
    """``g ← g + wd·p``; ``u = g/(√Σg² + ε)/(1 + (t−1)·lr_decay)``; ``p ← p − lr·u``."""
    return [add_l2(), scale_by_adagrad(), scale_by_lr()]


def _rmsprop_chain():
    """``g ← g + wd·p``; ``u = g/(√v + ε)`` (centered: ``√(v − ḡ²)``);
    ``b ← μ·b + u``; ``p ← p − lr·b``.

    torch's momentum buffer starts at zero, so its first value is ``u``, which
    is what ``trace`` (heavy ball, no dampening) does.
    """
    return [add_l2(), scale_by_rms(), trace(), scale_by_lr()]


def _adadelta_chain():
    """``g ← g + wd·p``; Adadelta's ``Δ = √(a + ε)/√(v + ε)·g``; ``p ← p − lr·Δ``."""
    return [add_l2(), scale_by_adadelta(), scale_by_lr()]


def _adamax_chain():
    """``g ← g + wd·p``; ``u = m/max(β₂·u, |g| + ε)/(1 − β₁ᵗ)``; ``p ← p − lr·u``."""
    return [add_l2(), scale_by_adamax(), scale_by_lr()]


def _nadam_chain():
    """Coupled or decoupled weight decay around NAdam's direction, then ``× −lr``."""
    return [add_l2_if_coupled(), scale_by_nadam(), add_decayed_weights_if_decoupled(), scale_by_lr()]


def _radam_chain():
    """Coupled or decoupled weight decay around RAdam's direction, then ``× −lr``."""
    return [add_l2_if_coupled(), scale_by_radam(), add_decayed_weights_if_decoupled(), scale_by_lr()]


register(
    OptimizerSpec(
        name="adagrad",
        summary="Adagrad: divides by the root of the sum of all squared gradients so far",
        defaults={
            "lr": 1e-2,
            "lr_decay": 0.0,
            "weight_decay": 0.0,
            "initial_accumulator_value": 0.0,
            "eps": 1e-10,
        },
        build=_adagrad_chain,
        reference="torch.optim.Adagrad",
        paper=(
            "Duchi, Hazan & Singer, 'Adaptive Subgradient Methods for Online Learning "
            "and Stochastic Optimization', JMLR 2011"
        ),
    )
)
register(
    OptimizerSpec(
        name="rmsprop",
        summary="RMSprop: divides by the root of a running mean of squared gradients",
        defaults={
            "lr": 1e-2,
            "alpha": 0.99,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "momentum": 0.0,
            "centered": False,
        },
        build=_rmsprop_chain,
        reference="torch.optim.RMSprop",
        paper=(
            "Tieleman & Hinton, 'Lecture 6.5 - RMSProp', COURSERA: Neural Networks for "
            "Machine Learning, 2012; centered: Graves, 'Generating Sequences With "
            "Recurrent Neural Networks', 2013"
        ),
    )
)
register(
    OptimizerSpec(
        name="adadelta",
        summary="Adadelta: step scaled by running RMS of past updates over RMS of gradients",
        defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
        build=_adadelta_chain,
        reference="torch.optim.Adadelta",
        paper="Zeiler, 'ADADELTA: An Adaptive Learning Rate Method', arXiv:1212.5701, 2012",
    )
)
register(
    OptimizerSpec(
        name="adamax",
        summary="Adamax: Adam with the infinity norm, dividing by max(β₂·u, |g|)",
        defaults={"lr": 2e-3, "betas": _BETAS, "eps": 1e-8, "weight_decay": 0.0},
        build=_adamax_chain,
        reference="torch.optim.Adamax",
        paper="Kingma & Ba, 'Adam: A Method for Stochastic Optimization', ICLR 2015, section 7.1",
    )
)
register(
    OptimizerSpec(
        name="nadam",
        summary="NAdam: Adam with Nesterov momentum and a momentum warm-up schedule",
        defaults={
            "lr": 2e-3,
            "betas": _BETAS,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "momentum_decay": 4e-3,
            "decoupled_weight_decay": False,
        },
        build=_nadam_chain,
        reference="torch.optim.NAdam",
        paper="Dozat, 'Incorporating Nesterov Momentum into Adam', ICLR 2016 workshop",
    )
)
register(
    OptimizerSpec(
        name="radam",
        summary="RAdam: Adam with its early-step variance rectified (momentum SGD until ρₜ > 5)",
        defaults={
            "lr": 1e-3,
            "betas": _BETAS,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "decoupled_weight_decay": False,
        },
        build=_radam_chain,
        reference="torch.optim.RAdam",
        paper=(
            "Liu et al., 'On the Variance of the Adaptive Learning Rate and Beyond', ICLR 2020"
        ),
    )
)
