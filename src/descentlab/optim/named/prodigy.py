"""Prodigy: Adam with a parameter-free, distance-adaptive step size.

prodigy = prodigy_step (which produces the step; see
:class:`descentlab.optim.transforms.ProdigyStep` for the update rule, and for
the two deliberate differences from the reference: d is estimated per param
group, and weight_decouple=False really adds the L2 term to the gradient).

Its own ``weight_decay`` is scaled by the step size d·lr (or not at all with
``fixed_decay``); the universal ``decoupled_decay`` of ``optim.create`` is
scaled by ``lr`` alone, which is 1.0 here, so prefer ``weight_decay``.
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import prodigy_step


def _prodigy_chain():
    """Prodigy's own step; its weight_decay (decoupled by default) is inside it."""
    return [prodigy_step()]


register(
    OptimizerSpec(
        name="prodigy",
        summary="Prodigy: Adam whose step size d·lr estimates the distance to the solution (keep lr=1)",
        defaults={
            "lr": 1.0,
            "betas": (0.9, 0.999),
            "beta3": None,
            "d0": 1e-6,
            "d_coef": 1.0,
            "growth_rate": float("inf"),
            "weight_decay": 0.0,
            "weight_decouple": True,
            "fixed_decay": False,
            "bias_correction": False,
            "safeguard_warmup": False,
            "eps": 1e-8,
        },
        build=_prodigy_chain,
        reference="pytorch_optimizer.Prodigy (4.1.0), with d per param group",
        paper=(
            "Mishchenko & Defazio, 'Prodigy: An Expeditiously Adaptive Parameter-Free Learner', "
            "ICML 2024"
        ),
    )
)
