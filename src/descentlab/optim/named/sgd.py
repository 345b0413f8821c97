"""Gradient descent with and without momentum.

Batch, stochastic and mini-batch gradient descent are all this update; the
trainer's ``batch_size`` ("full", 1 or N) is what tells them apart.
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import add_l2, scale_by_lr, trace


def _sgd_chain():
    """``g ← g + wd·p``; momentum (heavy ball or Nesterov, see ``trace``); ``p ← p − lr·u``."""
    return [add_l2(), trace(), scale_by_lr()]


_PAPER_SGD = "Robbins & Monro, 'A Stochastic Approximation Method', 1951"
_PAPER_MOMENTUM = "Polyak, 'Some methods of speeding up the convergence of iteration methods', 1964"
_PAPER_NESTEROV = (
    "Nesterov 1983; Sutskever et al., 'On the importance of initialization and momentum "
    "in deep learning', ICML 2013"
)
_SGD_DEFAULTS = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}

register(
    OptimizerSpec(
        name="sgd",
        summary="plain (stochastic) gradient descent: p ← p − lr·g",
        defaults=_SGD_DEFAULTS,
        build=_sgd_chain,
        reference="torch.optim.SGD",
        paper=_PAPER_SGD,
    )
)
register(
    OptimizerSpec(
        name="momentum",
        summary="SGD with heavy-ball momentum 0.9: b ← μ·b + g; p ← p − lr·b",
        defaults={**_SGD_DEFAULTS, "momentum": 0.9},
        build=_sgd_chain,
        reference="torch.optim.SGD(momentum=0.9)",
        paper=_PAPER_MOMENTUM,
    )
)
register(
    OptimizerSpec(
        name="nesterov",
        summary="SGD with Nesterov momentum 0.9: p ← p − lr·(g + μ·b)",
        defaults={**_SGD_DEFAULTS, "momentum": 0.9, "nesterov": True},
        build=_sgd_chain,
        reference="torch.optim.SGD(momentum=0.9, nesterov=True)",
        paper=_PAPER_NESTEROV,
    )
)
