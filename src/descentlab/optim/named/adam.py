"""Adam, AMSGrad and AdamW: adam = add_l2 → scale_by_adam → scale_by_lr;
adamw inserts decoupled weight decay after the adaptive scaling."""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import add_decayed_weights, add_l2, scale_by_adam, scale_by_lr

_ADAM_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
_PAPER_ADAM = "Kingma & Ba, 'Adam: A Method for Stochastic Optimization', ICLR 2015"


def _adam_chain():
    """Coupled L2 (torch.optim.Adam's weight_decay), Adam's direction, the lr."""
    return [add_l2(), scale_by_adam(), scale_by_lr()]


def _adamw_chain():
    """Adam's direction, then decoupled decay ``+ wd·p``, then ``× −lr``."""
    return [scale_by_adam(), add_decayed_weights(), scale_by_lr()]


register(
    OptimizerSpec(
        name="adam",
        summary="Adam: bias-corrected first and second moments; weight_decay is coupled L2",
        defaults=_ADAM_DEFAULTS,
        build=_adam_chain,
        reference="torch.optim.Adam",
        paper=_PAPER_ADAM,
    )
)
register(
    OptimizerSpec(
        name="amsgrad",
        summary="Adam with AMSGrad: divides by the running maximum of the second moment",
        defaults={**_ADAM_DEFAULTS, "amsgrad": True},
        build=_adam_chain,
        reference="torch.optim.Adam(amsgrad=True)",
        paper="Reddi, Kale & Kumar, 'On the Convergence of Adam and Beyond', ICLR 2018",
    )
)
register(
    OptimizerSpec(
        name="adamw",
        summary="AdamW: Adam with decoupled weight decay p ← p − lr·wd·p (default wd 0.01)",
        defaults={**_ADAM_DEFAULTS, "weight_decay": 1e-2},
        build=_adamw_chain,
        reference="torch.optim.AdamW",
        paper="Loshchilov & Hutter, 'Decoupled Weight Decay Regularization', ICLR 2019",
    )
)
