"""Reference for shampoo: pytorch_optimizer.ScalableShampoo (v4.1.0), as it is.

Our ``graft_type`` and ``pre_conditioner_type`` are names; the reference takes
its enums' integers. ``graft_type="adam"`` has no counterpart there; it is
tested by construction in tests/optim/test_shampoo.py.

The one source of randomness, the start vector of the power iteration that
estimates λ_max for the ridge, is drawn from the global RNG by the reference;
``_SeededScalableShampoo`` seeds it with 0 around each draw (restoring the RNG),
which is the start ours uses. Without it the float64 results differ by ~5e-10.

The test tensors are small: with the defaults (block_size 512,
shape_interpretation) a 6×5 matrix merges into one dimension and is not
preconditioned, and no root is computed in 100 steps
(preconditioning_compute_steps 1000), so the variants use small blocks, early
roots and the other options.
"""

import torch
from pytorch_optimizer import ScalableShampoo
from pytorch_optimizer.optimizer.utils import matrix as _matrix

from descentlab.optim.transforms.shampoo import (
    GRAFT_TYPES,
    PRECONDITIONER_TYPES,
    graft_name,
    preconditioner_type_name,
)

from ._common import Reference

_power_iteration = _matrix.power_iteration


def _seeded_power_iteration(mat_g, num_iters=100):
    """The reference's power iteration, its random start drawn with the global RNG
    seeded 0 (and restored after): the start ours uses (``_start_vector``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _power_iteration(mat_g, num_iters)


class _SeededScalableShampoo(ScalableShampoo):
    @torch.no_grad()
    def step(self, closure=None):
        _matrix.power_iteration = _seeded_power_iteration
        try:
            return super().step(closure)
        finally:
            _matrix.power_iteration = _power_iteration


def _shampoo(groups, **hp):
    hp["graft_type"] = GRAFT_TYPES[graft_name(hp["graft_type"])]
    hp["pre_conditioner_type"] = PRECONDITIONER_TYPES[preconditioner_type_name(hp["pre_conditioner_type"])]
    return _SeededScalableShampoo(groups, **hp)


_VARIANTS = [
    # AdaGrad grafting; block_size 2 cuts 6×5 (interpreted 1×6×5) into 3×3 blocks of ≤2×2.
    {"lr": 0.01, "graft_type": "adagrad", "block_size": 2, "preconditioning_compute_steps": 10,
     "start_preconditioning_step": 5},
    # RMSProp grafting, the paper's 2-D blocks (no shape interpretation), statistics every 2nd step,
    # coupled weight decay, no Nesterov.
    {"lr": 0.005, "graft_type": "rmsprop", "shape_interpretation": False, "block_size": 4,
     "preconditioning_compute_steps": 7, "statistics_compute_steps": 2, "start_preconditioning_step": 3,
     "weight_decay": 0.01, "nesterov": False, "betas": (0.8, 0.99)},
    # SGD grafting, whole matrices (4th roots), EMA momentum, decoupled decay, maximize.
    {"lr": 0.02, "graft_type": "sgd", "shape_interpretation": False, "preconditioning_compute_steps": 5,
     "start_preconditioning_step": 3, "moving_average_for_momentum": True, "decoupled_weight_decay": True,
     "weight_decay": 0.1, "maximize": True, "matrix_eps": 1e-4},
    # No grafting, one-sided (input) preconditioner, fixed exponent, lr coupled into the momentum.
    {"lr": 0.01, "graft_type": "none", "shape_interpretation": False, "pre_conditioner_type": "input",
     "inverse_exponent_override": 2, "decoupled_learning_rate": False, "preconditioning_compute_steps": 4,
     "start_preconditioning_step": 1, "weight_decay": 0.001},
    # Sign grafting, output-side preconditioner from SVD roots, larger diagonal eps.
    {"lr": 0.003, "graft_type": "sqrtn", "shape_interpretation": False, "pre_conditioner_type": "output",
     "use_svd": True, "preconditioning_compute_steps": 3, "start_preconditioning_step": 2,
     "diagonal_eps": 1e-6},
    # AdaGrad grafting with blocks of 3 under shape interpretation, preconditioning dims of exactly the limit (6).
    {"lr": 0.01, "graft_type": 2, "block_size": 3, "preconditioning_compute_steps": 6,
     "no_preconditioning_for_layers_with_dim_gt": 6, "start_preconditioning_step": 2},
]

REFERENCES = {
    "shampoo": Reference(
        _shampoo,
        _VARIANTS,
        {"momentum": "momentum"},
        descent={"lr": 0.05, "preconditioning_compute_steps": 10, "start_preconditioning_step": 5,
                 "shape_interpretation": False, "graft_type": "adagrad"},
    ),
}
