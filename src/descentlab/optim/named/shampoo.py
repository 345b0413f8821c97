"""Shampoo with grafting, blocking and amortized inverse roots (pytorch_optimizer.ScalableShampoo).

``optim.create("shampoo", model.parameters())`` is Scalable Shampoo (Gupta,
Koren & Singer, ICML 2018; Anil et al. 2020) exactly as
``pytorch_optimizer.ScalableShampoo`` (v4.1.0) computes it, with its
hyperparameter names and defaults::

    lr=1e-3, betas=(0.9, 0.999), moving_average_for_momentum=False,
    weight_decay=0.0, decoupled_weight_decay=False, decoupled_learning_rate=True,
    inverse_exponent_override=0, start_preconditioning_step=25,
    preconditioning_compute_steps=1000, statistics_compute_steps=1,
    block_size=512, skip_preconditioning_rank_lt=1,
    no_preconditioning_for_layers_with_dim_gt=8192, shape_interpretation=True,
    graft_type="sgd", pre_conditioner_type="all", nesterov=True,
    diagonal_eps=1e-10, matrix_eps=1e-6, use_svd=False

(the reference's ``graft_type``/``pre_conditioner_type`` integers are accepted
too: ``LayerWiseGrafting.SGD`` is 1, ...). ``graft_type="adam"`` (RMSProp
grafting with Adam's bias correction of the second moment, as Meta's
``AdamGraftingConfig``) is an addition. The rule, step by step, is in
:class:`~descentlab.optim.transforms.shampoo.ScaleByShampoo`;
the chain is ``scale_by_shampoo → scale_by_shampoo_lr → decay_weights_if_decoupled``.

Things to know about the reference's defaults (kept, since they are the
reference's):

* ``preconditioning_compute_steps=1000``: the roots are first computed at step
  1000; until then the preconditioners are the identity and Shampoo is SGD with
  momentum at the graft's per-tensor scale. Set it to 10–100 for Shampoo.
* ``shape_interpretation=True`` merges dimensions greedily up to
  ``block_size``, and a first dimension larger than ``block_size`` gets an
  extra size-1 dimension in front (see ``interpreted_shape``): a 1024×1024
  weight with block_size 512 is treated as 1×1024×1024, cut into four 512×512
  blocks, each with a 1×1 factor (its own squared norm) and two 512×512 ones,
  and the roots are 6th, not 4th, inverse roots. ``shape_interpretation=False``
  gives the paper's 4th roots of the 2-D blocks. A small matrix whose size is
  at most ``block_size`` (e.g. 6×5) merges into one dimension and is not
  preconditioned at all (grafting only).
* ``graft_type="sgd"``: the Shampoo direction gets the gradient's norm.
  AdaGrad/RMSProp/Adam grafting (``diagonal_eps`` = 1e-10) gives it the norm
  of an adaptive step instead, which is what makes lr transferable from Adam.
* Grafting and the switch at ``start_preconditioning_step`` are per tensor;
  two momenta are kept (the graft's, used before the start, and Shampoo's).

How this differs from Meta's Distributed Shampoo (facebookresearch/optimizers,
``DistributedShampoo``; Shi et al. 2023, "A Distributed Data-Parallel PyTorch
Implementation of the Distributed Shampoo Optimizer for Training Neural
Networks At-Scale"). Meta's defaults quoted are those of its constructor
(lr 1e-2, betas (0.9, 1.0), epsilon 1e-12, momentum 0,
max_preconditioner_dim 1024, precondition_frequency 100, AdaGrad grafting);
they have moved between releases, so check the version in use:

* **Root computation.** Here: the coupled Newton iteration (Guo & Higham) on
  ``L + matrix_eps·λ_max(L)·I`` — a *relative* ridge (1e-6 of λ_max, λ_max by
  100 power iterations) — stopped at ``max|M − I| ≤ 1e-3``: an approximate
  root, good to about 1e-3/e. Meta's default: a symmetric eigendecomposition
  (``torch.linalg.eigh``) of ``L + ε·I`` with an *absolute* ``epsilon``
  (1e-12), giving the exact ``Q·diag((λ + ε)^(−1/e))·Qᵀ``; the coupled inverse
  Newton iteration is an option there, as is the eigenvalue-corrected (SOAP)
  form.
* **Epsilon placement.** Here ``matrix_eps`` enters twice: the statistics start
  at ``matrix_eps·I`` (so they are never singular, and the ridge decays with
  β₂ᵗ), and the ridge ``matrix_eps·λ_max`` is added at each root. The graft's
  ``diagonal_eps`` (1e-10) is added to ``√v`` (outside the root). Meta starts
  its factor matrices at zero and adds ``epsilon`` only at the root; its graft
  has its own ``grafting_epsilon``.
* **Exponent.** Both take ``−1/(2k)`` for a tensor of order k by default
  (override here: ``inverse_exponent_override``; Meta: ``exponent_override`` /
  ``exponent_multiplier``), but here k counts the dimensions of the
  *interpreted* shape, so with the default ``shape_interpretation`` a large
  matrix gets the 6th root (the leading 1 above). Meta's dimension merging
  (``use_merge_dims``) makes no such size-1 dimension.
* **Statistics and bias correction.** Here an EMA ``β₂·L + (1 − β₂)·GGᵀ``
  (β₂ < 1, default 0.999) without bias correction; the graft's RMSProp
  statistics have none either (``graft_type="adam"`` adds it). Meta: β₂ = 1 by
  default, a plain AdaGrad-style sum; for β₂ < 1 it bias-corrects the factor
  matrices and (``use_bias_correction``) the first moment.
* **Grafting.** Here per tensor: the whole parameter's Shampoo direction gets
  the norm of the graft's direction, and before ``start_preconditioning_step``
  (default 25) the graft's own momentum step is taken. Meta grafts per block
  of the blocked tensor, grafts "only the second moment" (its β₁ filtering and
  momentum act outside the graft), and runs the graft alone until
  ``start_preconditioning_step`` (by default equal to ``precondition_frequency``).
* **Momentum and weight decay.** Here heavy-ball momentum (β₁ = 0.9, the step
  is ~10× the grafted direction at steady state) on the grafted direction, plus
  a separate graft momentum, Nesterov on by default, coupled L2 by default, no
  bias correction. Meta: β₁ is a bias-corrected EMA of the *gradient* taken
  before preconditioning, ``momentum`` (default 0, Nesterov off) acts on the
  search direction after it, and decoupled (AdamW) decay is the default.
* **Distribution.** Both block with ``block_size`` / ``max_preconditioner_dim``.
  Meta distributes blocks over the data-parallel ranks: each rank owns some
  blocks, keeps their factors and roots, preconditions them, and the search
  directions are all-gathered. Here every process computes every block of a
  sharded parameter from the all-gathered gradient (``ScaleByShampoo``).
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms.shampoo import (
    ScaleByShampoo,
    decay_weights_if_decoupled,
    scale_by_shampoo,
    scale_by_shampoo_lr,
)

#: The reference's defaults, but for one: the roots every 10 steps, not every 1000
#: (the reference computes none before step 1000, so with its default the first
#: thousand steps are its SGD graft with Nesterov momentum; the issue's setting).
SHAMPOO_DEFAULTS = {**{key: hyper.default for key, hyper in ScaleByShampoo.hypers.items()},
                    "preconditioning_compute_steps": 10}


def _shampoo_chain():
    """Grafted Shampoo with momentum, then ``× −lr``, then decoupled decay if asked."""
    return [scale_by_shampoo(), scale_by_shampoo_lr(), decay_weights_if_decoupled()]


register(
    OptimizerSpec(
        name="shampoo",
        summary="Scalable Shampoo: blocked Kronecker-factored preconditioner, grafted to SGD/AdaGrad/RMSProp/Adam",
        defaults=SHAMPOO_DEFAULTS,
        build=_shampoo_chain,
        reference="pytorch_optimizer.ScalableShampoo (v4.1.0)",
        paper=(
            "Gupta, Koren & Singer, 'Shampoo: Preconditioned Stochastic Tensor Optimization', ICML 2018; "
            "Anil, Gupta, Koren, Regan & Singer, 'Scalable Second Order Optimization for Deep Learning', 2020"
        ),
    )
)
