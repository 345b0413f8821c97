"""PSGD Kron: preconditioned SGD with a Kronecker-factored preconditioner.

Xi-Lin Li, "Preconditioned Stochastic Gradient Descent", IEEE Transactions on
Neural Networks and Learning Systems 29(5), 2018 (arXiv:1512.04202), and
Li, "Preconditioner on Matrix Lie Group for SGD", ICLR 2019 (arXiv:1809.10232):
the Kron preconditioner of his psgd_torch, in the form of Evan Walters'
kron_torch as pytorch-optimizer 4.1.0 (``pytorch_optimizer.Kron``) implements it.

For a parameter of shape (n₁, …, n_k), the preconditioner is
``P = (Q₁ᵀQ₁) ⊗ … ⊗ (Q_kᵀQ_k)``; each factor ``Q_i`` is an upper-triangular
n_i×n_i matrix, or a diagonal (a vector) where n_i is 1, larger than
``max_size_triangular``, the tensor has fewer than ``min_ndim_triangular``
dimensions, or ``memory_save_mode`` asks for it (``"one_diag"``: the largest
dimension, the last of equal ones; ``"smart_one_diag"``: the largest if it is
strictly the largest; ``"all_diag"``: every dimension). Writing ``X ×_i M`` for
the product of a matrix M with X along dimension i (a diagonal scales it), one
step of :class:`ScaleByKron` is::

    m ← μ·m + (1 − μ)·g;          m̂ = m / (1 − μᵗ)                    (momentum)
    every 1/prob steps (a counter, see below):
        v ~ N(0, I)  (the shape of g, from the parameter's own generator)
        A = h ×₁ Q₁ … ×_k Q_k      with h = m̂ (or g if not momentum_into_precondition_update)
        B = v ×₁ Q₁⁻ᵀ … ×_k Q_k⁻ᵀ
        for each i, with the contractions over every dimension but i:
            triangular: Q_i ← Q_i − η·triu(AAᵀ − BBᵀ)·Q_i / (‖AAᵀ + BBᵀ‖₂,lower + ε)
            diagonal:   q_i ← q_i − η·(Σa² − Σb²)·q_i / (max|Σa² + Σb²| + ε)
    u = m̂ ×₁ Q₁ᵀQ₁ … ×_k Q_kᵀQ_k                                     (preconditioned)
    u ← u · min(1, 1.1 / (RMS(u) + 10⁻⁶))

η = ``precondition_lr``, ε the smallest normal bfloat16 (= float32) number,
and ‖·‖₂,lower the lower bound of the spectral norm from one power-iteration
step started at the largest row (:func:`norm_lower_bound`). The Q update is a
step of Li's fitting criterion E[hᵀPh + vᵀP⁻¹v] on the Lie group of
upper-triangular matrices: at its fixed point P·E[hhᵀ]·P = E[vvᵀ] = I, so P is
the inverse square root of the (momentum's) second moment — whitening, like
Shampoo's, estimated from one matrix–vector pair per update and never inverted.
With probability ``balance_prob`` at each update of a tensor of two or more
dimensions the factors are first rescaled to equal max-norms (their Kronecker
product is unchanged; it keeps them representable).

When the preconditioner is updated: as the reference, with a counter, not a
coin: ``prob = pre_conditioner_update_probability`` (a number, a callable of
the step index, or None for ``clamp(exp(−0.001·(t − 500)), 0.03, 1)``, t the
number of steps taken before this one), and the factors are updated when the
steps since the last update reach ``1/prob`` (prob 0.1: every 10th step; 0.3:
every 4th, as 1/0.3 = 3.33…; 1.0: every step; 0: never).

Randomness: each parameter owns a ``torch.Generator`` seeded with ``seed`` (the
same seed for every parameter: the probe vectors of two parameters are
correlated, which does not bias either one's update). Its state is kept in the
parameter's state as a uint8 tensor (``rng_state``), so ``state_dict()`` /
``load_state_dict()`` resume exactly, and every FSDP rank, holding the same
state, draws the same probe. The reference (pytorch-optimizer's Kron) draws v
from torch's global generator and its balancing coin from NumPy's global one,
once per step for all parameters; here the coin is drawn per parameter, before
v, from the parameter's generator (the tests seed the reference to draw the
same numbers).

Cost per step: the momentum, and k matrix products ``n_i × numel`` for the
preconditioned gradient with the cached ``Q_iᵀQ_i`` (the reference contracts
its einsum left to right, through an n₁²·n₂² intermediate), no host
synchronization. Every 1/prob steps the factor update adds k products for A,
k triangular solves for B (in float32, as the reference), 2k Gram matrices,
k products by Q_i and k for the cached Q_iᵀQ_i.
State per parameter: the momentum (numel), each factor twice (Q_i and the
cached Q_iᵀQ_i: n_i² or n_i each), a 5 KiB generator state (16 bytes on
CUDA), and the update counter.

Sharded parameters (FSDP2 DTensors, dim 0): the rule needs whole tensors, so
each process gathers the whole momentum (and the whole gradient when it feeds
the factor update instead of the momentum) with :func:`sharded.full`, holds
the factors as plain tensors identical on every process, computes the whole
preconditioned update and keeps its rows (:func:`sharded.shard`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import sharded
from ..base import (
    Hyper,
    Transform,
    _is_real,
    boolean,
    nonnegative,
    one_of,
    positive,
    unit_interval,
)
from .regularize import AddL2

__all__ = [
    "AddL2ToMatricesIfCoupled",
    "AddDecayedWeightsToMatricesIfDecoupled",
    "ScaleByKron",
    "add_l2_to_matrices_if_coupled",
    "add_decayed_weights_to_matrices_if_decoupled",
    "scale_by_kron",
    "as_dtype",
    "triangular_dims",
    "mode_products",
    "norm_lower_bound",
    "update_probability",
]

#: ε of the factor update: the smallest normal bfloat16 number (the reference's).
TINY = torch.finfo(torch.bfloat16).tiny
MEMORY_SAVE_MODES = (None, "one_diag", "smart_one_diag", "all_diag")
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


# -- checks --------------------------------------------------------------------


def _probability_or_schedule(value: Any) -> str | None:
    if value is None or callable(value) or (_is_real(value) and 0 <= value <= 1):
        return None
    return "None (the default schedule), a number in [0, 1], or a callable of the step index"


def _closed_unit(value: Any) -> str | None:
    return None if _is_real(value) and 0 <= value <= 1 else "a number in [0, 1]"


def _nonnegative_int(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return "an integer >= 0"
    return None


def _seed(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        return "an integer in [0, 2**64)"
    return None


def as_dtype(value: Any) -> torch.dtype | None:
    """A dtype hyperparameter's value: None, a torch.dtype, or its name
    ("float32", "torch.bfloat16"); anything else (or not floating) gives None too."""
    if isinstance(value, str):
        value = getattr(torch, value.removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) and value.is_floating_point else None


def _float_dtype_or_none(value: Any) -> str | None:
    if value is None or as_dtype(value) is not None:
        return None
    return "None or a floating-point torch.dtype or its name (e.g. 'float32')"


# -- the pieces of the rule -------------------------------------------------------


def triangular_dims(
    shape: Sequence[int], max_size: int, min_ndim: int, memory_save_mode: str | None
) -> list[bool]:
    """For each dimension, whether its factor is triangular (True) or diagonal."""
    ndim = len(shape)
    diagonal = [False] * ndim
    if ndim and memory_save_mode == "all_diag":
        diagonal = [True] * ndim
    elif ndim and memory_save_mode == "one_diag":
        largest = max(shape)
        diagonal[max(i for i, n in enumerate(shape) if n == largest)] = True
    elif ndim >= 2 and memory_save_mode == "smart_one_diag":
        ordered = sorted(shape)
        if ordered[-1] > ordered[-2]:
            diagonal[shape.index(ordered[-1])] = True
    return [not (n == 1 or n > max_size or ndim < min_ndim or d) for n, d in zip(shape, diagonal)]


def mode_products(x: Tensor, factors: Sequence[Tensor]) -> Tensor:
    """``x ×₁ F₁ … ×_k F_k``: each matrix factor applied along its dimension
    (``F @ x`` there), each vector factor scaling it.

    Dimension by dimension, the leading one is contracted and moved last
    (``x.reshape(n, −1)ᵀ @ Fᵀ``), so after k products the order is back: one
    matrix multiplication per matrix factor, reading its operand transposed in
    place (no copy), and one strided pass per vector factor.
    """
    if x.ndim == 0:
        return x * factors[0]
    for f in factors:
        n = x.shape[0]
        rest = x.shape[1:]
        xt = x.reshape(n, -1).T
        if f.ndim == 2:
            y = xt @ f.T
        else:
            y = torch.mul(xt, f, out=xt.new_empty(xt.shape))
        x = y.reshape(*rest, n)
    return x


def _mode_solves(v: Tensor, factors: Sequence[Tensor]) -> Tensor:
    """``v ×₁ Q₁⁻ᵀ … ×_k Q_k⁻ᵀ`` by triangular solves (``X·Q⁻¹`` on the contracted
    dimension); a vector factor divides. The solves run in float32 whatever the
    factors' dtype, as the reference's (torch has no bfloat16 solve; a float64
    factor is solved in float32 too, so the two agree in float64)."""
    if v.ndim == 0:
        return v / factors[0]
    x = v
    for q in factors:
        n = x.shape[0]
        rest = x.shape[1:]
        xt = x.reshape(n, -1).T
        if q.ndim == 2:
            f32 = torch.float32
            y = torch.linalg.solve_triangular(q.to(f32), xt.to(f32), upper=True, left=False).to(x.dtype)
        else:
            y = torch.div(xt, q, out=xt.new_empty(xt.shape))
        x = y.reshape(*rest, n)
    return x


def _gram(x: Tensor, dim: int, triangular: bool) -> Tensor:
    """``x`` contracted with itself over every dimension but ``dim``."""
    if x.ndim <= 1:
        return x * x
    others = [d for d in range(x.ndim) if d != dim]
    if not triangular:
        return (x * x).sum(dim=others)
    n = x.shape[dim]
    if dim == 0:
        xr = x.reshape(n, -1)
        return xr @ xr.T
    if dim == x.ndim - 1:
        xr = x.reshape(-1, n)
        return xr.T @ xr
    return torch.tensordot(x, x, dims=(others, others))


def norm_lower_bound(a: Tensor) -> Tensor:
    """A lower bound of the spectral norm ‖a‖₂ of a matrix (Li's psgd_torch).

    ``a`` is scaled by its largest entry; starting from its row ``a_j`` of
    largest norm, one power-iteration step gives ``‖aᵀx‖`` with
    ``x = a·a_j / ‖a·a_j‖``, a lower bound (x is a unit vector) within a small
    factor of ‖a‖₂ for the symmetric positive semi-definite matrices it is
    used on. O(n²); all the factor update's step-size normalization needs.
    The reference also tries the largest column and keeps the larger bound;
    for a symmetric matrix both starts are the same. ``a`` is not modified.
    """
    top = torch.linalg.vector_norm(a, ord=math.inf)
    a = a / top.clamp_min(torch.finfo(a.dtype).tiny)
    j = (a * a).sum(dim=1).argmax()
    x = a @ a[j]
    return top * torch.linalg.vector_norm(a.T @ (x / torch.linalg.vector_norm(x).clamp_min(torch.finfo(a.dtype).tiny)))


@functools.lru_cache(maxsize=64)
def _scheduled(steps_taken: int) -> tuple[bool, float]:
    """The default schedule at ``steps_taken``: (prob > 0, 1/prob), computed in
    float32 tensors as the reference does (so the thresholds agree exactly)."""
    prob = torch.exp(-0.001 * (torch.tensor(steps_taken, dtype=torch.float32) - 500)).clamp_(min=0.03, max=1.0)
    return bool(prob > 0), float(1 / prob)


def update_probability(value: Any, steps_taken: int) -> tuple[bool, Any]:
    """``(prob > 0, 1/prob)`` for ``pre_conditioner_update_probability`` ``value``
    (None: ``clamp(exp(−0.001·(t − 500)), 0.03, 1)``; callable: ``value(t)``)."""
    if value is None:
        return _scheduled(steps_taken)
    if callable(value):
        value = value(steps_taken)
    positive_prob = bool(value > 0)
    return positive_prob, (1 / value if positive_prob else math.inf)


def _balance(factors: Sequence[Tensor], coin: Tensor) -> None:
    """Rescale the factors to equal max-norms (their product unchanged) where ``coin``."""
    norms = torch.stack([q.abs().amax() for q in factors])
    mean = norms.prod() ** (1 / len(factors))
    scales = torch.where(coin, mean / norms, 1.0)
    for q, s in zip(factors, scales):
        q.mul_(s)


def _update_factors(
    factors: Sequence[Tensor], triangular: Sequence[bool], v: Tensor, h: Tensor, lr: float
) -> None:
    """One step of Li's Q update on the Lie group (see the module docstring), in place."""
    a = mode_products(h, factors)
    b = _mode_solves(v, factors)
    terms = [(_gram(a, i, t), _gram(b, i, t)) for i, t in enumerate(triangular)]
    for q, t, (aa, bb) in zip(factors, triangular, terms):
        step = aa - bb
        step *= lr
        if t:
            step = torch.triu(step)
            step.div_(norm_lower_bound(aa + bb).add_(TINY))
            q.sub_(step @ q)
        else:
            step *= q
            step.div_((aa + bb).abs().amax().add_(TINY))
            q.sub_(step)


def _as_bytes(dtype: torch.dtype, param_dtype: torch.dtype) -> bool:
    """Whether a factor of ``dtype`` is kept as its bytes (uint8): when it is wider
    than the parameter, as torch's ``load_state_dict`` casts every state tensor
    to the parameter's dtype (a float32 factor of a bfloat16 weight would be
    rounded; byte values 0–255 survive any floating dtype exactly)."""
    return dtype.itemsize > param_dtype.itemsize


def _stored(t: Tensor, param_dtype: torch.dtype) -> Tensor:
    """``t`` as kept in the state: itself, or its bytes (see :func:`_as_bytes`)."""
    return t.reshape(-1).view(torch.uint8) if _as_bytes(t.dtype, param_dtype) else t


def _loaded(state: dict, key: str, dtype: torch.dtype, param_dtype: torch.dtype, shape: Sequence[int]) -> Tensor:
    """The factor ``state[key]`` as a ``dtype`` tensor sharing the state's memory."""
    t = state[key]
    if t.dtype == dtype:
        return t
    if t.dtype != torch.uint8:
        # Just loaded: load_state_dict cast it to the parameter's dtype, exactly
        # (bytes, or values of a narrower dtype); restore the stored form once.
        t = state[key] = t.to(torch.uint8) if _as_bytes(dtype, param_dtype) else t.to(dtype)
        if t.dtype == dtype:
            return t
    return t.view(dtype).view(shape)


# -- transforms ------------------------------------------------------------------


class ScaleByKron(Transform):
    """PSGD Kron's direction: momentum, Kronecker-factored preconditioning, RMS cap.

    See the module docstring for the rule, the update schedule, the factor
    types and the randomness. Hyperparameters (pytorch-optimizer's Kron's names
    and defaults): ``momentum`` 0.9, ``pre_conditioner_update_probability``
    None (the schedule), ``max_size_triangular`` 8192, ``min_ndim_triangular``
    2, ``memory_save_mode`` None, ``momentum_into_precondition_update`` True,
    ``mu_dtype`` None (the momentum in the parameter's dtype),
    ``precondition_dtype`` float32 (the factors, and the preconditioning, in
    float32 whatever the parameter's dtype; None: the parameter's). The two
    dtypes may be given as torch dtypes or by name; the default is the name
    ``"float32"``, which torch.distributed.checkpoint can save in a param group
    (it refuses a torch.dtype value there),
    ``precondition_lr`` 0.1 (η), ``precondition_init_scale`` 1.0 (Q starts as
    its k-th root times I), ``balance_prob`` 0.01; and ``seed`` 0 (the
    generator's seed; not in the reference, which uses the global generators).

    State: ``momentum_buffer``; ``Q0`` … ``Q{k−1}`` (a 0-dim tensor has one
    scalar factor ``Q0``) and ``QtQ0`` … (the cached ``Q_iᵀQ_i``, or ``q_i²``),
    kept as their bytes (uint8) when wider than the parameter's dtype (torch's
    ``load_state_dict`` casts state tensors to the parameter's dtype);
    ``rng_state`` (the generator's state, uint8, or its byte values in the
    parameter's dtype after ``load_state_dict``: exact either way);
    ``update_counter``. A ``mu_dtype`` wider than the parameter's is rounded
    by ``load_state_dict`` to the parameter's dtype (as torch's own optimizers'
    state would be).
    Reference: pytorch_optimizer.Kron (4.1.0), with its randomness seeded as here.
    """

    hypers = {
        "momentum": Hyper(0.9, unit_interval),
        "pre_conditioner_update_probability": Hyper(None, _probability_or_schedule),
        "max_size_triangular": Hyper(8192, _nonnegative_int),
        "min_ndim_triangular": Hyper(2, _nonnegative_int),
        "memory_save_mode": Hyper(None, one_of(*MEMORY_SAVE_MODES)),
        "momentum_into_precondition_update": Hyper(True, boolean),
        "mu_dtype": Hyper(None, _float_dtype_or_none),
        "precondition_dtype": Hyper("float32", _float_dtype_or_none),
        "precondition_lr": Hyper(0.1, nonnegative),
        "precondition_init_scale": Hyper(1.0, positive),
        "balance_prob": Hyper(0.01, _closed_unit),
        "seed": Hyper(0, _seed),
    }
    state_keys = ("momentum_buffer", "rng_state", "update_counter")

    # -- state ---------------------------------------------------------------

    def _triangular(self, shape: Sequence[int], group: Mapping[str, Any]) -> list[bool]:
        return triangular_dims(
            list(shape),
            self.hp(group, "max_size_triangular"),
            self.hp(group, "min_ndim_triangular"),
            self.hp(group, "memory_save_mode"),
        )

    def init_state(self, p, state, group):
        # ``p`` is the whole parameter here (a DTensor's shape is its global shape).
        state["momentum_buffer"] = torch.zeros_like(p, dtype=as_dtype(self.hp(group, "mu_dtype")) or p.dtype)
        dtype = as_dtype(self.hp(group, "precondition_dtype")) or p.dtype
        scale = self.hp(group, "precondition_init_scale")
        shape = list(p.shape)
        if not shape:
            factors = [torch.full((), scale, dtype=dtype, device=p.device)]
        else:
            scale = math.pow(scale, 1 / len(shape))
            factors = [
                scale * (torch.eye(n, dtype=dtype, device=p.device) if tri else torch.ones(n, dtype=dtype, device=p.device))
                for n, tri in zip(shape, self._triangular(shape, group))
            ]
        for i, q in enumerate(factors):
            state[f"Q{i}"] = _stored(q, p.dtype)
            state[f"QtQ{i}"] = _stored(q.T @ q if q.ndim == 2 else q * q, p.dtype)
        generator = torch.Generator(device=p.device).manual_seed(self.hp(group, "seed"))
        state["rng_state"] = generator.get_state()
        state["update_counter"] = 0

    def _factors(self, state: dict, shape: Sequence[int], group: Mapping[str, Any], param_dtype) -> tuple:
        """The factors Q_i, their cached Q_iᵀQ_i, and which are triangular."""
        dtype = as_dtype(self.hp(group, "precondition_dtype")) or param_dtype
        if not shape:
            return [_loaded(state, "Q0", dtype, param_dtype, ())], [_loaded(state, "QtQ0", dtype, param_dtype, ())], [False]
        triangular = self._triangular(shape, group)
        sizes = [(n, n) if t else (n,) for n, t in zip(shape, triangular)]
        factors = [_loaded(state, f"Q{i}", dtype, param_dtype, s) for i, s in enumerate(sizes)]
        cached = [_loaded(state, f"QtQ{i}", dtype, param_dtype, s) for i, s in enumerate(sizes)]
        return factors, cached, triangular

    # -- the step ------------------------------------------------------------

    def _due(self, state: dict, group: Mapping[str, Any]) -> bool:
        """Whether the factors are updated at this step (the reference's counter)."""
        counter = state["update_counter"] + 1
        positive_prob, threshold = update_probability(
            self.hp(group, "pre_conditioner_update_probability"), state["step"] - 1
        )
        due = bool(positive_prob and counter >= threshold)
        state["update_counter"] = 0 if due else counter
        return due

    def _debias(self, group: Mapping[str, Any], state: Mapping[str, Any]) -> float:
        return 1.0 - math.pow(self.hp(group, "momentum"), state["step"])

    def _prepare(self, u: Tensor, p: Tensor, m: Tensor, state: dict, group: Mapping[str, Any]) -> list[Tensor]:
        """Update the factors if due (from the whole debiased momentum ``m``, or
        the gradient ``u``); return the cached ``Q_iᵀQ_i`` to precondition with."""
        dtype = as_dtype(self.hp(group, "precondition_dtype")) or p.dtype
        shape = list(sharded.shape(p, state))
        factors, cached, triangular = self._factors(state, shape, group, p.dtype)
        if not self._due(state, group):
            return cached
        # The generator state is uint8, or its byte values in the parameter's
        # dtype after load_state_dict; it is written back in place.
        rng = state["rng_state"]
        generator = torch.Generator(device=m.device)
        generator.set_state(rng.to(device="cpu", dtype=torch.uint8))
        balance = self.hp(group, "balance_prob")
        if len(shape) > 1 and balance > 0:
            coin = torch.rand((), generator=generator, dtype=torch.float32, device=m.device) < balance
            _balance(factors, coin)
        v = torch.randn(shape, generator=generator, dtype=dtype, device=m.device)
        rng.copy_(generator.get_state())
        h = m if self.hp(group, "momentum_into_precondition_update") else sharded.full(u, state).to(dtype)
        _update_factors(factors, triangular, v, h, self.hp(group, "precondition_lr"))
        for q, c in zip(factors, cached):
            if q.ndim == 2:
                torch.matmul(q.T, q, out=c)
            else:
                torch.mul(q, q, out=c)
        return cached

    def _buffer(self, p: Tensor, state: dict, group: Mapping[str, Any]) -> Tensor:
        buf = state["momentum_buffer"]
        want = as_dtype(self.hp(group, "mu_dtype")) or p.dtype
        if buf.dtype != want:  # load_state_dict casts floating state to the parameter's dtype
            buf = state["momentum_buffer"] = buf.to(want)
        return buf

    def update_tensor(self, u, p, state, group):
        mu = self.hp(group, "momentum")
        buf = self._buffer(p, state, group)
        buf.mul_(mu).add_(u, alpha=1 - mu)
        dtype = as_dtype(self.hp(group, "precondition_dtype")) or p.dtype
        m = sharded.full((buf / self._debias(group, state)).to(dtype), state)
        out = mode_products(m, self._prepare(u, p, m, state, group)).to(p.dtype)
        out.mul_(torch.clamp(1.1 / (out.square().mean().sqrt() + 1e-6), max=1.0))
        return sharded.shard(out, state)

    def update_foreach(self, updates, params, states, group):
        """The same rule with its elementwise parts as multi-tensor ops, and the
        preconditioning of small tensors of equal shapes batched (``bmm``); the
        factor updates and large tensors go tensor by tensor."""
        mu = self.hp(group, "momentum")
        bufs = [self._buffer(p, s, group) for p, s in zip(params, states)]
        torch._foreach_mul_(bufs, mu)
        torch._foreach_add_(bufs, updates, alpha=1 - mu)
        debiased = torch._foreach_div(bufs, [self._debias(group, s) for s in states])
        dtype = as_dtype(self.hp(group, "precondition_dtype"))
        ms = [sharded.full(m.to(dtype or p.dtype), s) for m, p, s in zip(debiased, params, states)]
        cached = [self._prepare(u, p, m, s, group) for u, p, m, s in zip(updates, params, ms, states)]
        outs = _precondition_many(ms, cached)
        outs = [o.to(p.dtype) for o, p in zip(outs, params)]
        # min(1, 1.1/(RMS + 1e-6)) for every tensor at once
        scales = torch._foreach_div(torch._foreach_norm(outs), [math.sqrt(max(o.numel(), 1)) for o in outs])
        torch._foreach_add_(scales, 1e-6)
        torch._foreach_reciprocal_(scales)
        torch._foreach_mul_(scales, 1.1)
        torch._foreach_clamp_max_(scales, 1.0)
        torch._foreach_mul_(outs, scales)
        return [sharded.shard(o, s) for o, s in zip(outs, states)]


#: Tensors up to this size are preconditioned in batches of equal shapes.
BATCH_NUMEL = 1 << 16


def _precondition_many(ms: Sequence[Tensor], cached: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """``mode_products(m, c)`` for each pair; small tensors of one shape, dtype
    and factor layout stacked into one batched product per factor."""
    outs: list[Tensor | None] = [None] * len(ms)
    batches: dict[tuple, list[int]] = {}
    for i, (m, c) in enumerate(zip(ms, cached)):
        if 0 < m.ndim and m.numel() <= BATCH_NUMEL:
            key = (tuple(m.shape), m.dtype, m.device, tuple(f.ndim for f in c))
            batches.setdefault(key, []).append(i)
        else:
            outs[i] = mode_products(m, c)
    for idx in batches.values():
        if len(idx) == 1:
            outs[idx[0]] = mode_products(ms[idx[0]], cached[idx[0]])
            continue
        x = torch.stack([ms[i] for i in idx])
        for d in range(x.ndim - 1):
            f = torch.stack([cached[i][d] for i in idx])
            batch, n = x.shape[0], x.shape[1]
            rest = x.shape[2:]
            xt = x.reshape(batch, n, -1).transpose(1, 2)
            if f.ndim == 3:
                y = torch.bmm(xt, f.transpose(1, 2))
            else:
                y = torch.mul(xt, f.unsqueeze(1), out=xt.new_empty(xt.shape))
            x = y.reshape(batch, *rest, n)
        for k, i in enumerate(idx):
            outs[i] = x[k]
    return outs


class AddL2ToMatricesIfCoupled(AddL2):
    """``u ← u + λ·p`` for parameters of two or more dimensions, unless
    ``weight_decouple``: Kron's coupled weight decay (before the momentum).

    As pytorch-optimizer's Kron, vectors and scalars (biases, norm gains) are
    never decayed.
    """

    hypers = {**AddL2.hypers, "weight_decouple": Hyper(True, boolean)}
    before_direction = True  # cautious.with_cautious: a gradient term, before the mask

    def _applies(self, p: Tensor, group: Mapping[str, Any]) -> bool:
        return p.ndim >= 2 and not self.hp(group, "weight_decouple") and self.hp(group, "weight_decay") != 0

    def update_tensor(self, u, p, state, group):
        return u.add(p, alpha=self.hp(group, "weight_decay")) if self._applies(p, group) else u

    def update_foreach(self, updates, params, states, group):
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]


class AddDecayedWeightsToMatricesIfDecoupled(AddL2ToMatricesIfCoupled):
    """``u ← u + λ·p`` for parameters of two or more dimensions if
    ``weight_decouple``: Kron's decoupled weight decay (Loshchilov & Hutter,
    ICLR 2019), placed after the preconditioning and before ``scale_by_lr``, so
    ``p ← p − lr·(u + λ·p)``. Vectors and scalars are never decayed.
    """

    before_direction = False
    after_direction = True  # cautious.with_cautious: decay is not masked

    def _applies(self, p: Tensor, group: Mapping[str, Any]) -> bool:
        return p.ndim >= 2 and self.hp(group, "weight_decouple") and self.hp(group, "weight_decay") != 0


scale_by_kron = ScaleByKron
add_l2_to_matrices_if_coupled = AddL2ToMatricesIfCoupled
add_decayed_weights_to_matrices_if_decoupled = AddDecayedWeightsToMatricesIfDecoupled
