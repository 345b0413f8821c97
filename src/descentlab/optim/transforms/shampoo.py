"""Shampoo's pieces: blocked Kronecker-factored preconditioning with grafting.

Shampoo (Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor
Optimization", ICML 2018) preconditions the gradient ``G`` of an order-k tensor
with one matrix per dimension. For a matrix ``G`` (m×n)::

    L ← β₂·L + (1 − β₂)·G·Gᵀ          (m×m)
    R ← β₂·R + (1 − β₂)·Gᵀ·G          (n×n)
    Ĝ = L^(−1/e) · G · R^(−1/e)        e = 2k (4 for a matrix)

and, for an order-k tensor, ``Ĝ = G ×₁ P₁ ×₂ P₂ … ×ₖ Pₖ`` with
``Pᵢ = Lᵢ^(−1/2k)`` and ``Lᵢ`` accumulating the mode-i unfolding
``G₍ᵢ₎·G₍ᵢ₎ᵀ``. "Scalable Second Order Optimization for Deep Learning"
(Anil, Gupta, Koren, Regan & Singer, 2020) makes it practical, and this module
follows its recipe as ``pytorch_optimizer.ScalableShampoo`` (v4.1.0, after
Google's ``scalable_shampoo/optax/distributed_shampoo.py``) implements it:

* **blocking**: every dimension larger than ``block_size`` is cut into blocks
  of ``block_size`` (the last one shorter); each block has its own statistics
  and roots, so no matrix is larger than ``block_size``²;
* **shape interpretation**: the dimensions are first merged greedily into
  products of at most ``block_size`` (:func:`interpreted_shape`);
* **amortized roots**: the inverse p-th roots are recomputed only every
  ``preconditioning_compute_steps`` steps (the statistics every
  ``statistics_compute_steps``), by a coupled Newton iteration
  (:func:`inverse_pth_root`; Guo & Higham, "A Schur–Newton Method for the
  Matrix p-th Root and its Inverse", SIAM J. Matrix Anal. Appl. 2006), with a
  ridge ``matrix_eps·λ_max`` added first;
* **grafting** (Agarwal, Anil, Hazan, Koren & Zhang, "Disentangling Adaptive
  Gradient Methods from Learning Rates", 2020): the Shampoo direction of each
  tensor is rescaled to the norm of a simpler optimizer's direction (SGD,
  AdaGrad, RMSProp, sign, or — not in the reference — bias-corrected Adam), and
  the first ``start_preconditioning_step − 1`` steps use the grafted optimizer
  itself;
* **momentum** on top, heavy-ball or EMA, with a Nesterov option.

``shampoo`` = ``scale_by_shampoo → scale_by_shampoo_lr →
decay_weights_if_decoupled``. The plan of blocks is derived from the
parameter's global shape; the state holds tensors only (statistics and roots as
lists of matrices), so ``state_dict()`` round trips exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import sharded
from ..base import (
    Hyper,
    Transform,
    betas_pair,
    boolean,
    learning_rate,
    nonnegative,
    positive_int,
)

__all__ = [
    "GRAFT_TYPES",
    "PRECONDITIONER_TYPES",
    "BlockPlan",
    "DecayWeightsIfDecoupled",
    "ScaleByShampoo",
    "ScaleByShampooLr",
    "block_plan",
    "decay_weights_if_decoupled",
    "interpreted_shape",
    "inverse_pth_root",
    "largest_eigenvalue",
    "scale_by_shampoo",
    "scale_by_shampoo_lr",
]

#: Grafting types by name, with the integer of pytorch_optimizer's ``LayerWiseGrafting``
#: (``adam`` is ours: it has no number there).
GRAFT_TYPES = {"none": 0, "sgd": 1, "adagrad": 2, "rmsprop": 3, "sqrtn": 4, "adam": None}
#: Which dimensions get a preconditioner, with pytorch_optimizer's ``PreConditionerType`` integers.
PRECONDITIONER_TYPES = {"all": 0, "input": 1, "output": 2}


def _choice(table: Mapping[str, int | None]):
    numbers = {v: k for k, v in table.items() if v is not None}

    def check(value: Any) -> str | None:
        if isinstance(value, str) and value.lower() in table:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value in numbers:
            return None
        names = ", ".join(repr(k) for k in table)
        return f"one of {names} (or the reference's integers {sorted(numbers)})"

    def name(value: Any) -> str:
        return value.lower() if isinstance(value, str) else numbers[int(value)]

    return check, name


_graft_check, graft_name = _choice(GRAFT_TYPES)
_pc_check, preconditioner_type_name = _choice(PRECONDITIONER_TYPES)


def _nonnegative_int(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return "an integer >= 0"
    return None


# -- the plan of blocks -----------------------------------------------------------


def interpreted_shape(shape: Sequence[int], max_dim: int) -> list[int]:
    """Merge consecutive dimensions while their product stays ≤ ``max_dim``.

    Greedy from the first dimension: a running product absorbs the next
    dimension ``d`` unless that would exceed ``max_dim``; then the running
    product is emitted and ``d`` starts a new one. This is
    ``pytorch_optimizer``'s ``merge_small_dims``, including its quirk: a
    leading dimension larger than ``max_dim`` emits the empty product 1 first,
    so (1024, 1024) with ``max_dim`` 512 becomes (1, 1024, 1024) — a rank-3
    tensor, whose 1×1 "preconditioner" rescales each block by its own norm and
    whose roots are then the 6th (not 4th) inverse roots; and a vector longer
    than ``max_dim`` becomes (1, d), so a bias of 1024 gets a 512×512
    preconditioner per block (its gradient's outer products). Google's original
    ``merge_small_dims`` drops such 1s; ``shape_interpretation=False`` avoids
    the merge altogether, and ``skip_preconditioning_rank_lt=2`` leaves vectors
    to the graft. A shape that merges into a single dimension becomes ``[1]``
    (not preconditioned).
    """
    merged: list[int] = []
    run = 1
    for d in shape:
        if run * d > max_dim:
            merged.append(run)
            run = d
        else:
            run *= d
    merged.append(run)
    return merged if len(merged) > 1 else [1]


def _split(d: int, block_size: int) -> list[int]:
    if block_size >= d:
        return [d]
    full = (d - 1) // block_size
    return [block_size] * full + [d - full * block_size]


@dataclass(frozen=True)
class BlockPlan:
    """How one parameter is preconditioned.

    Attributes:
        shape: the shape the gradient is reshaped to (after shape interpretation).
        selected: which of its dimensions get a preconditioner.
        exponent: the root ``e`` in ``L^(−1/e)``.
        blocks: per block, the tuple of slices that cut it out of ``shape``, in
            the reference's order (the first cut dimension varies slowest).
        block_shapes: the shape of each block.
        sizes: the size of each statistic, block by block, dimension by
            dimension (selected dimensions only); an empty tuple when the
            parameter is not preconditioned.
    """

    shape: tuple[int, ...]
    selected: tuple[bool, ...]
    exponent: int
    blocks: tuple[tuple[slice, ...], ...]
    block_shapes: tuple[tuple[int, ...], ...]
    sizes: tuple[int, ...]

    @property
    def preconditioned(self) -> bool:
        return bool(self.sizes)

    @property
    def rank(self) -> int:
        return sum(self.selected)


def block_plan(
    shape: Sequence[int],
    block_size: int,
    shape_interpretation: bool,
    preconditioner_type: str,
    skip_preconditioning_rank_lt: int,
    no_preconditioning_for_layers_with_dim_gt: int,
    inverse_exponent_override: int,
) -> BlockPlan:
    """The :class:`BlockPlan` of a parameter of (global) ``shape``.

    Not preconditioned (grafting only): tensors whose interpreted shape has one
    dimension (1-D parameters, small tensors that merge into one dimension),
    tensors with fewer than ``skip_preconditioning_rank_lt`` dimensions, and
    tensors with a dimension above ``no_preconditioning_for_layers_with_dim_gt``.
    """
    shape = tuple(int(d) for d in shape)
    view = tuple(interpreted_shape(shape, block_size) if shape_interpretation else shape)
    k = len(view)
    if preconditioner_type == "all" or k <= 1:
        selected = (True,) * k
    elif preconditioner_type == "input":
        selected = (True,) * (k - 1) + (False,)
    else:
        selected = (False,) * (k - 1) + (True,)
    rank = sum(selected)
    exponent = inverse_exponent_override if inverse_exponent_override > 0 else 2 * rank
    skip = (
        k <= 1
        or len(shape) < skip_preconditioning_rank_lt
        or any(d > no_preconditioning_for_layers_with_dim_gt for d in shape)
        or math.prod(shape) == 0
    )
    if skip:
        return BlockPlan(view, selected, exponent, (), (), ())
    per_dim = [_split(d, block_size) for d in view]
    blocks, block_shapes, sizes = [], [], []
    for combo in itertools.product(*[list(zip(itertools.accumulate([0] + s[:-1]), s)) for s in per_dim]):
        blocks.append(tuple(slice(start, start + size) for start, size in combo))
        bshape = tuple(size for _, size in combo)
        block_shapes.append(bshape)
        sizes.extend(d for d, sel in zip(bshape, selected) if sel)
    return BlockPlan(view, selected, exponent, tuple(blocks), tuple(block_shapes), tuple(sizes))


# -- inverse roots ----------------------------------------------------------------

_START_VECTORS: dict[tuple, Tensor] = {}


def _start_vector(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The power iteration's start: ``torch.randn(n, dtype=dtype)`` drawn from a CPU
    generator seeded with 0 (the same on every process and at every call; the
    global RNG is left alone), then moved to ``device``."""
    key = (n, dtype, str(device))
    v = _START_VECTORS.get(key)
    if v is None:
        g = torch.Generator().manual_seed(0)
        v = torch.randn(n, generator=g, dtype=dtype).to(device)
        _START_VECTORS[key] = v
    return v


def largest_eigenvalue(a: Tensor, iterations: int = 100) -> Tensor:
    """λ_max of a symmetric PSD matrix, or of each of a stack ``(B, n, n)`` of them,
    by the power method (a 0-dim tensor, or B values; each ≥ 1e-16).

    ``iterations`` normalized products ``v ← A·v/‖A·v‖`` from a fixed start
    (:func:`_start_vector`), then the Rayleigh quotient ``vᵀ·A·v``. A stack is
    iterated at once (``bmm``): the same arithmetic, one Python loop for all
    the statistics of one size. The reference draws its start from the global
    RNG (``torch.randn``), a fresh one at every call; the start changes the
    estimate by its unconverged part, ~(λ₂/λ₁)^200 relative, which reaches the
    result only through the ridge ``matrix_eps·λ_max`` (about 5e-10 relative
    over 100 steps in the float64 tests). The tests run the reference with the
    global RNG seeded 0 at each call, the same start as here, and then agree to
    rounding.
    """
    single = a.ndim == 2
    stack = a.unsqueeze(0) if single else a
    v = _start_vector(stack.shape[-1], a.dtype, a.device).expand(stack.shape[0], -1).unsqueeze(-1)
    tiny = torch.finfo(a.dtype).tiny
    for _ in range(iterations):
        w = torch.bmm(stack, v)
        v = w.div_(torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min_(tiny))
    lam = (v * torch.bmm(stack, v)).sum(dim=(1, 2)).clamp_min_(1e-16)
    return lam[0] if single else lam


def inverse_pth_root(
    a: Tensor,
    p: int,
    ridge_epsilon: float = 1e-6,
    max_iters: int = 100,
    error_tolerance: float = 1e-3,
    max_error_ratio: float = 1.2,
    lam: Tensor | None = None,
) -> Tensor:
    """``(A + ridge_epsilon·λ_max(A)·I)^(−1/p)`` by the coupled Newton iteration.

    Guo & Higham (2006), as used by Anil et al. (2020): with ``A`` regularized
    and scaled by ``z = (1 + p)/(2·‖A‖_F)`` so that the iteration converges,
    start from ``X₀ = z^(1/p)·I`` and ``M₀ = z·A`` and repeat::

        Tₖ   = ((p + 1)·I − Mₖ)/p           (written (1 − α)·I + α·Mₖ, α = −1/p)
        Xₖ₊₁ = Xₖ·Tₖ                        → A^(−1/p)
        Mₖ₊₁ = Tₖᵖ·Mₖ                       → I

    stopping when ``max|Mₖ₊₁ − I| ≤ error_tolerance`` (returning ``Xₖ₊₁``), or
    when the error grows by more than ``max_error_ratio`` (returning ``Xₖ``), or
    after ``max_iters``. A 1×1 matrix is handled in closed form:
    ``(a + ridge_epsilon·max(a, 1e-16))^(−1/p)``. The same stopping rules as
    the reference make the two take the same number of iterations. ``lam``:
    λ_max(A) if already known (:func:`largest_eigenvalue` of a stack).
    """
    n = a.shape[0]
    if n == 1:
        return (a + ridge_epsilon * a.clamp_min(1e-16)).pow(-1.0 / p)
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    if lam is None:
        lam = largest_eigenvalue(a)
    a = a + (lam * ridge_epsilon) * eye
    z = (1 + p) / (2 * torch.linalg.norm(a))
    x = eye * z.pow(1.0 / p)
    m = a * z
    alpha = -1.0 / p
    shifted_eye = (1.0 - alpha) * eye
    previous = torch.dist(m, eye, p=math.inf)
    for _ in range(max_iters):
        t = shifted_eye + alpha * m
        x_next = x @ t
        m_next = torch.linalg.matrix_power(t, p) @ m
        error = torch.dist(m_next, eye, p=math.inf)
        diverged = bool(error > previous * max_error_ratio)
        if diverged:
            return x
        if bool(error <= error_tolerance):
            return x_next
        x, m, previous = x_next, m_next, error
    return x


def _svd_inverse_root(a: Tensor, p: int) -> Tensor:
    """``A^(−1/p)`` from the SVD, without a ridge (the reference's ``use_svd``)."""
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    return (u * s.pow(-1.0 / p).unsqueeze(-2)) @ vh


def _with_eigenvalues(stats: Sequence[Tensor]):
    """``(i, stats[i], λ_max or None)``: the power iterations of all the statistics
    of one size run as one stack (1×1 ones need none)."""
    by_size: dict[int, list[int]] = {}
    for i, stat in enumerate(stats):
        if stat.shape[0] > 1:
            by_size.setdefault(stat.shape[0], []).append(i)
    lams: dict[int, Tensor] = {}
    for idx in by_size.values():
        values = largest_eigenvalue(torch.stack([stats[i] for i in idx]))
        lams.update(zip(idx, values.unbind()))
    for i, stat in enumerate(stats):
        yield i, stat, lams.get(i)


# -- one block --------------------------------------------------------------------


def _nontrivial(shape: Sequence[int]) -> list[int]:
    return [i for i, d in enumerate(shape) if d != 1]


def _accumulate(block: Tensor, selected: Sequence[bool], stats: Sequence[Tensor], beta2: float) -> None:
    """``Lᵢ ← β₂·Lᵢ + (1 − β₂)·B₍ᵢ₎·B₍ᵢ₎ᵀ`` for each selected dimension i of ``block``."""
    w = 1.0 - beta2
    dims = _nontrivial(block.shape)
    axes = [i for i, sel in enumerate(selected) if sel]
    if len(dims) <= 2:
        flat = block.reshape([block.shape[i] for i in dims])  # a view: only size-1 dims dropped
        sumsq = None
        for stat, i in zip(stats, axes):
            if block.shape[i] == 1:
                if sumsq is None:
                    sumsq = torch.linalg.vector_norm(flat).square()
                stat.mul_(beta2).add_(sumsq, alpha=w)
            elif len(dims) == 1:
                stat.addr_(flat, flat, beta=beta2, alpha=w)
            elif i == dims[0]:
                stat.addmm_(flat, flat.T, beta=beta2, alpha=w)
            else:
                stat.addmm_(flat.T, flat, beta=beta2, alpha=w)
        return
    for stat, i in zip(stats, axes):
        unfolded = block.movedim(i, 0).reshape(block.shape[i], -1)
        stat.addmm_(unfolded, unfolded.T, beta=beta2, alpha=w)


def _precondition(block: Tensor, selected: Sequence[bool], roots: Sequence[Tensor]) -> Tensor:
    """``block ×₁ P₁ᵀ ×₂ P₂ᵀ …`` over the selected dimensions (a new tensor).

    Matrices (after dropping size-1 dimensions, whose 1×1 roots are scalar
    factors) take two matrix products, ``P_aᵀ·B·P_b``; higher orders contract
    one dimension at a time, as the reference does.
    """
    dims = _nontrivial(block.shape)
    if len(dims) > 2:
        out, k = block, 0
        order = (*range(1, block.ndim), 0)
        for sel in selected:
            if sel:
                out = torch.tensordot(out, roots[k], dims=([0], [0]))
                k += 1
            else:
                out = out.permute(order)
        return out
    flat = block.reshape([block.shape[i] for i in dims])
    out, scale, k = flat, None, 0
    for i, sel in enumerate(selected):
        if not sel:
            continue
        root = roots[k]
        k += 1
        if block.shape[i] == 1:
            scale = root[0, 0] if scale is None else scale * root[0, 0]
        elif len(dims) == 1:
            out = torch.mv(root.T, out)
        elif i == dims[0]:
            out = root.T @ out
        else:
            out = out @ root
    if scale is not None:
        out = out * scale
    elif out is flat:
        out = flat.clone()
    return out.reshape(block.shape)


# -- the transforms ---------------------------------------------------------------


class ScaleByShampoo(Transform):
    """The grafted, blocked Shampoo direction with its momentum (before the lr).

    With ``(β₁, β₂) = betas``, step ``t``, ``c = 1`` (or ``lr`` when
    ``decoupled_learning_rate=False``), for each parameter::

        graft:     gᵍ = c·D(g)       D: none/sgd → g; adagrad → g/(√Σg² + ε_d);
                                     rmsprop → g/(√v + ε_d), v = EMA_β₂(g²);
                                     adam → g/(√(v/(1 − β₂ᵗ)) + ε_d); sqrtn → sign(g)
        Shampoo:   if t % statistics_compute_steps = 0: update every block's Lᵢ
                   if t % preconditioning_compute_steps = 0: Pᵢ ← Lᵢ^(−1/e)
                   gˢ = c·(g ×₁ P₁ … ×ₖ Pₖ), block by block (Pᵢ = I until the
                   first root update; a tensor that is not preconditioned has gˢ = gᵍ)
                   gˢ ← gˢ·‖gᵍ‖/(‖gˢ‖ + 1e-16)          (unless graft_type "none")
        coupled decay (weight_decay, unless decoupled_weight_decay):
                   gᵍ ← gᵍ + λ·p,  gˢ ← gˢ + λ·p
        momentum:  m ← β₁·m + gˢ            (EMA: m ← lerp(m, gˢ, 1 − β₁))
                   mᵍ ← β₁·mᵍ + w·gᵍ        (w = 1 − β₁ for the EMA, else 1)
        u = m if t ≥ start_preconditioning_step else mᵍ
        nesterov:  u ← β₁·u + gˢ (or gᵍ before the start)   (EMA: lerp(u, ·, w))

    Statistics start at ``matrix_eps·I`` and roots at ``I``; ``e`` is twice
    the number of preconditioned dimensions of the interpreted shape (see
    :func:`interpreted_shape`) unless ``inverse_exponent_override`` > 0. Roots
    by :func:`inverse_pth_root` (ridge ``matrix_eps·λ_max``) or, with
    ``use_svd``, by the SVD without a ridge. Statistics and roots are float32
    (float64 for float64 parameters). Reference: pytorch_optimizer.ScalableShampoo,
    whose names and defaults these are; ``graft_type`` takes names
    ("sgd", ...) or its ``LayerWiseGrafting`` integers, ``pre_conditioner_type``
    names ("all", "input", "output") or its integers.

    Differences from the reference, none visible in the result: the step
    counter is per parameter (the reference's is per group; they agree when
    every parameter has a gradient at every step); the graft's momentum
    ``graft_momentum`` is no longer updated once ``t ≥
    start_preconditioning_step``, when it is no longer read; the power
    iteration for ``λ_max`` starts from a fixed vector instead of the global
    RNG (see :func:`largest_eigenvalue`).

    Sharded parameters (FSDP2 DTensors, split on dim 0): the gradient is
    gathered (``sharded.full``) to update the statistics and precondition it;
    statistics and roots are plain tensors, identical on every process; the
    graft's norm is all-reduced; each process keeps its rows of the result
    (``sharded.shard``). Communication per step: one all-gather of each
    preconditioned parameter's gradient and one scalar all-reduce per
    parameter (the graft's norm; none for ``graft_type="none"``); per root
    update: none — every process computes every block's statistics, roots and
    preconditioned direction, redundantly. The momenta and the graft's
    statistics stay sharded like the parameter.

    State: ``momentum``, ``graft_momentum``, ``graft_statistics`` (adagrad,
    rmsprop, adam), ``statistics`` and ``preconditioners`` (lists of matrices,
    block by block, dimension by dimension).
    """

    hypers = {
        "betas": Hyper((0.9, 0.999), betas_pair),
        "moving_average_for_momentum": Hyper(False, boolean),
        "weight_decay": Hyper(0.0, nonnegative),
        "decoupled_weight_decay": Hyper(False, boolean),
        "decoupled_learning_rate": Hyper(True, boolean),
        "lr": Hyper(1e-3, learning_rate),
        "inverse_exponent_override": Hyper(0, _nonnegative_int),
        "start_preconditioning_step": Hyper(25, positive_int),
        "preconditioning_compute_steps": Hyper(1000, positive_int),
        "statistics_compute_steps": Hyper(1, positive_int),
        "block_size": Hyper(512, positive_int),
        "skip_preconditioning_rank_lt": Hyper(1, _nonnegative_int),
        "no_preconditioning_for_layers_with_dim_gt": Hyper(8192, _nonnegative_int),
        "shape_interpretation": Hyper(True, boolean),
        "graft_type": Hyper("sgd", _graft_check),
        "pre_conditioner_type": Hyper("all", _pc_check),
        "nesterov": Hyper(True, boolean),
        "diagonal_eps": Hyper(1e-10, nonnegative),
        "matrix_eps": Hyper(1e-6, nonnegative),
        "use_svd": Hyper(False, boolean),
    }
    state_keys = ("momentum", "graft_momentum", "graft_statistics", "statistics", "preconditioners")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._plans: dict[tuple, BlockPlan] = {}

    # -- helpers --

    def plan(self, shape: Sequence[int], group: Mapping[str, Any]) -> BlockPlan:
        """The :class:`BlockPlan` of a parameter of global ``shape`` under ``group``'s settings."""
        key = (
            tuple(shape),
            self.hp(group, "block_size"),
            self.hp(group, "shape_interpretation"),
            preconditioner_type_name(self.hp(group, "pre_conditioner_type")),
            self.hp(group, "skip_preconditioning_rank_lt"),
            self.hp(group, "no_preconditioning_for_layers_with_dim_gt"),
            self.hp(group, "inverse_exponent_override"),
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = block_plan(key[0], *key[1:])
        return plan

    @staticmethod
    def _stat_dtype(p: Tensor) -> torch.dtype:
        return torch.float64 if p.dtype == torch.float64 else torch.float32

    def init_state(self, p, state, group):
        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["graft_momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if graft_name(self.hp(group, "graft_type")) in ("adagrad", "rmsprop", "adam"):
            state["graft_statistics"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        plan = self.plan(p.shape, group)  # p.shape is the global shape, also for a DTensor
        dtype, device = self._stat_dtype(p), p.device
        eps = self.hp(group, "matrix_eps")
        state["statistics"] = [eps * torch.eye(n, dtype=dtype, device=device) for n in plan.sizes]
        state["preconditioners"] = [torch.eye(n, dtype=dtype, device=device) for n in plan.sizes]

    def _graft(self, g: Tensor, state: dict, kind: str, beta2: float, eps: float, t: int) -> Tensor:
        """The grafted optimizer's direction ``D(g)``; ``g`` itself for none/sgd."""
        if kind in ("none", "sgd"):
            return g
        if kind == "sqrtn":
            return g.sign()
        v = state["graft_statistics"]
        if kind == "adagrad":
            v.addcmul_(g, g)
            return g.div(v.sqrt().add_(eps))
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        if kind == "rmsprop":
            return g.div(v.sqrt().add_(eps))
        return g.div(v.sqrt().div_(math.sqrt(1.0 - beta2**t)).add_(eps))  # adam

    def _shampoo(self, g: Tensor, state: dict, plan: BlockPlan, group: Mapping[str, Any], t: int) -> Tensor:
        """The whole (gathered) gradient, preconditioned block by block (a new tensor)."""
        stats, roots = state["statistics"], state["preconditioners"]
        if len(stats) != len(plan.sizes):
            raise ValueError(
                f"shampoo state holds {len(stats)} statistics for a parameter of shape "
                f"{tuple(g.shape)} whose blocks need {len(plan.sizes)}: block_size or the "
                "shape settings changed after the first step"
            )
        dtype = torch.float64 if g.dtype == torch.float64 else torch.float32
        if stats[0].dtype != dtype:
            # load_state_dict casts state to the parameter's dtype (bfloat16, say): back to float32
            state["statistics"] = stats = [s.to(dtype) for s in stats]
            state["preconditioners"] = roots = [r.to(dtype) for r in roots]
        beta2 = self.hp(group, "betas")[1]
        x = g.to(dtype).reshape(plan.shape)
        rank = plan.rank
        blocks = [x[sl] for sl in plan.blocks]
        if t % self.hp(group, "statistics_compute_steps") == 0:
            for j, block in enumerate(blocks):
                _accumulate(block, plan.selected, stats[j * rank : (j + 1) * rank], beta2)
        if t % self.hp(group, "preconditioning_compute_steps") == 0:
            eps, e = self.hp(group, "matrix_eps"), plan.exponent
            use_svd = self.hp(group, "use_svd")
            if use_svd:
                for i, stat in enumerate(stats):
                    roots[i] = _svd_inverse_root(stat, e)
            else:
                for i, stat, lam in _with_eigenvalues(stats):
                    roots[i] = inverse_pth_root(stat, e, eps, lam=lam)
        if len(blocks) == 1:
            out = _precondition(blocks[0], plan.selected, roots[:rank])
        else:
            out = torch.empty_like(x)
            for j, (block, sl) in enumerate(zip(blocks, plan.blocks)):
                out[sl] = _precondition(block, plan.selected, roots[j * rank : (j + 1) * rank])
        return out.reshape(g.shape).to(g.dtype)

    @staticmethod
    def _norm(x: Tensor, state: Mapping[str, Any]) -> Tensor:
        if sharded.sharding(state) is None:
            return torch.linalg.norm(x)
        (sq,) = sharded.all_reduce_sum([torch.linalg.vector_norm(x).square()], [state])
        return sq.sqrt()

    # -- the step --

    def update_tensor(self, u, p, state, group):
        t = state["step"]
        beta1, beta2 = self.hp(group, "betas")
        kind = graft_name(self.hp(group, "graft_type"))
        ema = self.hp(group, "moving_average_for_momentum")
        w = 1.0 - beta1 if ema else 1.0
        c = 1.0 if self.hp(group, "decoupled_learning_rate") else self.hp(group, "lr")
        started = t >= self.hp(group, "start_preconditioning_step")
        plan = self.plan(sharded.shape(p, state), group)

        graft = self._graft(u, state, kind, beta2, self.hp(group, "diagonal_eps"), t)
        if c != 1.0:
            graft = graft.mul(c)
        if plan.preconditioned:
            whole = self._shampoo(sharded.full(u, state), state, plan, group, t)
            if c != 1.0:
                whole.mul_(c)
            direction = sharded.shard(whole, state)
            if kind != "none":
                # the whole tensor's norm: the same on every process, no communication
                ratio = self._norm(graft, state) / (torch.linalg.norm(whole) + 1e-16)
                direction = direction.mul(ratio)
        elif kind != "none":
            norm = self._norm(graft, state)
            direction = graft.mul(norm / (norm + 1e-16))  # 1 but for gradients of norm ~1e-16
        else:
            direction = graft.clone()

        lam = self.hp(group, "weight_decay")
        if lam > 0 and not self.hp(group, "decoupled_weight_decay"):
            direction.add_(p, alpha=lam)
            if not started:
                graft = graft.add(p, alpha=lam)

        m = state["momentum"]
        if ema:
            m.lerp_(direction, 1.0 - beta1)
        else:
            m.mul_(beta1).add_(direction)
        if started:
            out, last = m, direction
        else:
            out = state["graft_momentum"].mul_(beta1).add_(graft, alpha=w)
            last = graft
        if self.hp(group, "nesterov"):
            out = out.lerp(last, w) if ema else out.mul(beta1).add_(last)
        return out

    def update_foreach(self, updates, params, states, group):
        # Matrix products per block: torch has no multi-tensor matmul to batch them.
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]


class ScaleByShampooLr(Transform):
    """``u ← −lr·u``, or ``u ← −u`` when ``decoupled_learning_rate=False``.

    With ``decoupled_learning_rate=False`` :class:`ScaleByShampoo` has already
    multiplied the graft and Shampoo directions by ``lr`` before the momentum
    (pytorch_optimizer.ScalableShampoo's "coupled" learning rate), so a change
    of lr then acts through the momentum rather than at once.
    """

    after_direction = True  # cautious.with_cautious masks what comes before

    hypers = {"lr": Hyper(1e-3, learning_rate), "decoupled_learning_rate": Hyper(True, boolean)}

    def _factor(self, group) -> float:
        return -self.hp(group, "lr") if self.hp(group, "decoupled_learning_rate") else -1.0

    def update_tensor(self, u, p, state, group):
        return u.mul(self._factor(group))

    def update_foreach(self, updates, params, states, group):
        return torch._foreach_mul(updates, self._factor(group))


class DecayWeightsIfDecoupled(Transform):
    """``u ← u − lr·λ·p`` when ``decoupled_weight_decay`` (placed after the lr).

    The step is then ``p ← (1 − lr·λ)·p + u``: ScalableShampoo's
    ``p.mul_(1 − lr·weight_decay)`` before its update (Loshchilov & Hutter,
    ICLR 2019). Without ``decoupled_weight_decay`` :class:`ScaleByShampoo`
    adds ``λ·p`` to both of its directions instead (coupled L2).
    """

    after_direction = True  # cautious.with_cautious masks what comes before

    hypers = {
        "weight_decay": Hyper(0.0, nonnegative),
        "decoupled_weight_decay": Hyper(False, boolean),
        "lr": Hyper(1e-3, learning_rate),
    }

    def _lam(self, group) -> float:
        if not self.hp(group, "decoupled_weight_decay"):
            return 0.0
        return self.hp(group, "weight_decay") * self.hp(group, "lr")

    def update_tensor(self, u, p, state, group):
        lam = self._lam(group)
        return u if lam == 0 else u.add(p, alpha=-lam)

    def update_foreach(self, updates, params, states, group):
        lam = self._lam(group)
        return updates if lam == 0 else torch._foreach_add(updates, params, alpha=-lam)


scale_by_shampoo = ScaleByShampoo
scale_by_shampoo_lr = ScaleByShampooLr
decay_weights_if_decoupled = DecayWeightsIfDecoupled
