"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024).

``soap = scale_by_soap → scale_by_lr → decay_updated_weights``, equal step for
step to pytorch_optimizer.SOAP (4.1.0), with its hyperparameter names and
defaults: ``lr=3e-3``, ``betas=(0.95, 0.95)``, ``shampoo_beta=None`` (β₂),
``weight_decay=1e-2``, ``precondition_frequency=10``,
``max_precondition_dim=10000``, ``merge_dims=False``, ``precondition_1d=False``,
``correct_bias=True``, ``normalize_gradient=False``,
``data_format="channels_first"``, ``eps=1e-8`` (and the universal
``maximize``). See ``transforms/soap.py`` for the rule::

    p ← (p − lr·√(1 − β₂ᵗ⁻¹)/(1 − β₁ᵗ⁻¹)·N)·(1 − lr·weight_decay)

with ``N`` Adam's direction computed in the eigenbasis; the decay is
decoupled and applied to the updated weights, as the reference. Each
parameter's first step only initializes its preconditioner (no update, no
decay).

Differences from the reference, all where it has no defined behaviour:

* the step count is per parameter (the reference counts per param group: a
  parameter that gets its first gradient after the group's first step is
  updated at once there, its statistics counted twice); the SOAP authors'
  code counts per parameter too;
* ``merge_dims=True`` with a tensor whose dimensions all merge into one (a 1-D
  tensor, or one with at most ``max_precondition_dim`` elements): the
  reference raises (it reshapes to ``[1]``); here the tensor keeps its shape;
* ``eps`` must be > 0 (the reference accepts 0, which divides by zero where a
  second moment is 0); ``shampoo_beta`` must be None or in [0, 1) (the
  reference takes any value ≥ 0);
* ``shampoo_beta`` and ``precondition_frequency`` are read from the param
  group at every step (the reference fixes them in each parameter's state at
  its first step): changing them in the group takes effect here.

On a CPU, the cost is that of the matrix products: ~6·(m²n + mn²) flops per
step for an m×n weight with both dimensions preconditioned, plus an eigh at
the first step and a QR every ``precondition_frequency`` steps; the state is
3 tensors of the weight's size plus two m×m and two n×n matrices. A
``max_precondition_dim`` of 1024–2048 leaves embedding-sized dimensions
unpreconditioned (the default, 10000, is the reference's).
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import decay_updated_weights, scale_by_lr, scale_by_soap

SOAP_DEFAULTS = {
    "lr": 3e-3,
    "betas": (0.95, 0.95),
    "shampoo_beta": None,
    "weight_decay": 1e-2,
    "precondition_frequency": 10,
    "max_precondition_dim": 10000,
    "merge_dims": False,
    "precondition_1d": False,
    "correct_bias": True,
    "normalize_gradient": False,
    "data_format": "channels_first",
    "eps": 1e-8,
}


def _soap_chain():
    """SOAP's direction, ``× −lr``, then ``p ← (p + u)·(1 − lr·wd)`` (not on the first step)."""
    return [scale_by_soap(), scale_by_lr(), decay_updated_weights(skip_first_step=True)]


register(
    OptimizerSpec(
        name="soap",
        summary="SOAP: Adam in the eigenbasis of Shampoo's preconditioner, refreshed every few steps",
        defaults=SOAP_DEFAULTS,
        build=_soap_chain,
        reference="pytorch_optimizer.SOAP",
        paper=(
            "Vyas et al., 'SOAP: Improving and Stabilizing Shampoo using Adam', 2024 (arXiv:2409.11321)"
        ),
    )
)
