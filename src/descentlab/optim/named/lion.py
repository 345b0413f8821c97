"""Lion: the sign of interpolated momentum, with decoupled weight decay.

lion = scale_by_sign → add_decayed_weights → scale_by_lr, i.e.::

    p ← p − lr·(sign(β₁·m + (1 − β₁)·g) + wd·p)
    m ← β₂·m + (1 − β₂)·g
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import add_decayed_weights, scale_by_lr, scale_by_sign


def _lion_chain():
    """Lion's sign direction, then decoupled decay ``+ wd·p``, then ``× −lr``.

    The decay is lion_pytorch's default (``decoupled_weight_decay=False``):
    ``p ← p·(1 − lr·wd)`` with the *current* lr, so it follows the schedule.
    lion_pytorch's ``decoupled_weight_decay=True`` (wd divided by the initial
    lr) is not offered; the universal ``decoupled_decay`` option is the same
    ``p ← p − lr·λ·p`` as ``weight_decay`` here.
    """
    return [scale_by_sign(), add_decayed_weights(), scale_by_lr()]


register(
    OptimizerSpec(
        name="lion",
        summary="Lion: p ← p − lr·(sign(β₁·m + (1 − β₁)·g) + wd·p); m ← β₂·m + (1 − β₂)·g",
        defaults={"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0},
        build=_lion_chain,
        reference="lion_pytorch.Lion",
        paper="Chen et al., 'Symbolic Discovery of Optimization Algorithms', NeurIPS 2023",
    )
)
