"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner.

Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade, "SOAP:
Improving and Stabilizing Shampoo using Adam", 2024 (arXiv:2409.11321).

For a weight ``W`` of shape (m, n) with gradient ``G``, Shampoo keeps the
statistics ``L = E[G·Gᵀ]`` (m×m) and ``R = E[Gᵀ·G]`` (n×n). SOAP runs Adam in
the coordinates of their eigenvectors ``Q_L``, ``Q_R`` (Algorithm 3 of the
paper), refreshing the eigenbasis only every ``precondition_frequency`` steps::

    G' = Q_Lᵀ·G·Q_R                          (the gradient in the eigenbasis)
    M  = β₁·M + (1 − β₁)·G                    (first moment, in W's coordinates)
    V  = β₂·V + (1 − β₂)·G'²                  (second moment, in the eigenbasis)
    N  = Q_L·((Q_Lᵀ·M·Q_R) / (√V + ε))·Q_Rᵀ   (Adam's direction, rotated back)
    u  = N·√(1 − β₂ᵗ⁻¹)/(1 − β₁ᵗ⁻¹)            (correct_bias; t−1: see below)
    L  = s·L + (1 − s)·G·Gᵀ,  R = s·R + (1 − s)·Gᵀ·G     (s = shampoo_beta, or β₂)

A tensor of any order gets one factor per dimension (``Q_k`` applied along
dimension k); a dimension larger than ``max_precondition_dim`` (and, here, one
of size 1, where the factor is the identity anyway) is left in its own
coordinates. 1-D tensors are preconditioned only with ``precondition_1d``.
``merge_dims`` first reshapes the tensor by merging adjacent dimensions while
their product stays ≤ ``max_precondition_dim`` (after moving a 4-D
``channels_last`` tensor's channels to dim 1).

The first step of each parameter only accumulates the statistics and takes
their eigenvectors (``eigh``, eigenvalues in descending order); there is no
update on that step, and the bias corrections count the steps after it. Every
``precondition_frequency`` updates the eigenbasis is refreshed by one step of
power iteration with a QR decomposition (the paper's Algorithm 4): for each
factor, ``P = S·Q`` with ``S`` its statistic, the columns sorted by the
estimated eigenvalues ``diag(Qᵀ·S·Q)`` (descending, and ``V`` permuted the
same way along that dimension), ``Q ← qr(P).Q`` computed in float32.

This is the rule of pytorch_optimizer.SOAP (4.1.0), which follows the authors'
code (github.com/nikhilvyas/SOAP), and it is equal to it step for step (tests:
tests/optim/refs/soap.py, tests/optim/test_soap.py). Same operations where
they decide a discrete outcome (eigh of ``S + 1e-30·I`` with the float64
fallback, the column flip, the argsort, QR in float32), matmuls on views
instead of the reference's ``tensordot`` (which copies transposes).

Speed: the reference projects both ``G`` and ``M`` into the eigenbasis at every
step. Projection is linear, so ``Q_Lᵀ·M·Q_R`` is kept (``exp_avg_projected``)
and updated as ``β₁·(·) + (1 − β₁)·G'``; it is recomputed from ``M`` each time
the eigenbasis changes, so it never drifts by more than a few roundings. Per
step that is 3 projections → 2 (6 instead of 8 matrix products of the size of
the weight for a matrix), at the cost of one more parameter-sized tensor.

Sharded parameters (FSDP2 DTensors, split on dim 0; see ``optim/sharded.py``):
``exp_avg``, ``exp_avg_sq`` and ``exp_avg_projected`` are of the parameter's
shape and stay sharded; the statistics ``GG_k`` and bases ``Q_k`` are plain
tensors, identical on every rank. Each step gathers the gradient (for the
statistics and ``G'``) and the normalized direction ``(Q_Lᵀ·M·Q_R)/(√V + ε)``
(to rotate it back): two all-gathers of the parameter's size, every process
then computing the same products; everything elementwise stays on the shard.
A refresh also gathers ``exp_avg_sq`` (to permute it) and ``exp_avg`` (to
project it in the new basis). Tensors with no preconditioned dimension are
stepped on the shard alone (Adam), with one scalar all-reduce for
``normalize_gradient``.
"""

from __future__ import annotations

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
    one_of,
    positive,
    positive_int,
    unit_interval,
)

__all__ = [
    "ScaleBySoap",
    "DecayUpdatedWeights",
    "scale_by_soap",
    "decay_updated_weights",
]


def _optional_beta(value: Any) -> str | None:
    if value is None or unit_interval(value) is None:
        return None
    return "None (use betas[1]) or a number in [0, 1)"


def merge_small_dims(shape: Sequence[int], max_dim: int) -> list[int]:
    """Merge runs of adjacent dimensions while their product stays ≤ ``max_dim``.

    ``(2, 3, 4, 512)`` with ``max_dim=64`` gives ``[24, 512]``. A dimension that
    alone exceeds ``max_dim`` stays as it is (preceded by a 1 if it comes first,
    as in pytorch_optimizer's ``merge_small_dims``, which this reproduces).
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
    return merged


@dataclass(frozen=True)
class Layout:
    """How a tensor of ``shape`` is seen by SOAP: the working shape and its factors.

    ``permute``: a 4-D channels_last tensor, seen as ``x.permute(0, 3, 1, 2)``
    before merging. ``work``: the working shape. ``pre[k]``: dimension k of the
    working shape has a preconditioner ``Q_k``.
    """

    shape: tuple[int, ...]
    permute: bool
    work: tuple[int, ...]
    pre: tuple[bool, ...]

    @classmethod
    def of(cls, shape: Sequence[int], group_hp: Mapping[str, Any]) -> Layout:
        shape = tuple(shape)
        max_dim = group_hp["max_precondition_dim"]
        permute, work = False, shape
        if len(shape) == 1:
            # The reference preconditions a 1-D tensor only with precondition_1d
            # (and merging one fails there; here it keeps its shape).
            n = shape[0]
            return cls(shape, False, shape, (group_hp["precondition_1d"] and 1 < n <= max_dim,))
        if group_hp["merge_dims"] and len(shape) > 1:
            permute = group_hp["data_format"] == "channels_last" and len(shape) == 4
            seen = (shape[0], shape[3], shape[1], shape[2]) if permute else shape
            merged = tuple(merge_small_dims(seen, max_dim))
            if len(merged) > 1:
                work = merged
            else:
                # Everything merges into one dimension: pytorch_optimizer raises
                # (it reshapes to [1]); the tensor keeps its own shape here.
                permute = False
        return cls(shape, permute, work, tuple(1 < d <= max_dim for d in work))

    @property
    def any(self) -> bool:
        return any(self.pre)

    def to_work(self, x: Tensor) -> Tensor:
        """``x`` (of ``shape``) in the working shape (a view when possible)."""
        if self.permute:
            x = x.permute(0, 3, 1, 2)
        return x if tuple(x.shape) == self.work else x.reshape(self.work)

    def from_work(self, y: Tensor) -> Tensor:
        """The inverse of :meth:`to_work` (a view when possible)."""
        if self.permute:
            n, h, w, c = self.shape
            return y.reshape(n, c, h, w).permute(0, 2, 3, 1)
        return y if tuple(y.shape) == self.shape else y.reshape(self.shape)


def apply_along(x: Tensor, m: Tensor, k: int) -> Tensor:
    """``y[…, i, …] = Σⱼ m[i, j]·x[…, j, …]`` along dimension ``k`` (a new tensor), by matmul."""
    n = x.ndim
    if n == 1:
        return m @ x
    d = x.shape[k]
    if k == 0:
        a = x.reshape(d, -1)
        if a.shape[1] * 8 <= d and not m.is_contiguous():
            # m·a with m a transposed view (Qᵀ) and a thin a: MKL is several times
            # slower than (aᵀ·Q)ᵀ with aᵀ made contiguous (the copy is small).
            return (a.T.contiguous() @ m.T).T.reshape(x.shape)
        return (m @ a).view(x.shape)
    if k == n - 1:
        a = x.reshape(-1, d)
        if a.shape[0] * 8 <= d and m.is_contiguous():
            # a·mᵀ with a wide, thin a: likewise, (m·aᵀ)ᵀ.
            return (m @ a.T.contiguous()).T.reshape(x.shape)
        return (a @ m.T).view(x.shape)
    return torch.matmul(m, x.reshape(math.prod(x.shape[:k]), d, -1)).reshape(x.shape)


def gram(x: Tensor, k: int) -> Tensor:
    """``Σ x[…, i, …]·x[…, j, …]`` over every dimension but ``k``: the (d×d) statistic of dim k."""
    n = x.ndim
    if n == 1:
        return torch.outer(x, x)
    d = x.shape[k]
    if k == 0:
        a = x.reshape(d, -1)
        return a @ a.T
    if k == n - 1:
        a = x.reshape(-1, d)
        return a.T @ a
    a = x.movedim(k, 0).reshape(d, -1)
    return a @ a.T


def eigenbasis(s: Tensor) -> Tensor:
    """Eigenvectors of the symmetric ``s`` (columns), by decreasing eigenvalue.

    As the reference: ``eigh(s + 1e-30·I)``, in float64 where ``eigh`` fails
    (no kernel for the dtype, or no convergence), then the columns reversed.
    """
    n = s.shape[0]
    try:
        _, q = torch.linalg.eigh(s + 1e-30 * torch.eye(n, device=s.device, dtype=s.dtype))
    except Exception:  # noqa: BLE001 - any failure of the solver: retry in float64, as the reference
        s64 = s.to(torch.float64)
        _, q = torch.linalg.eigh(s64 + 1e-30 * torch.eye(n, device=s.device, dtype=torch.float64))
        q = q.to(s.dtype)
    return torch.flip(q, dims=[1])


class ScaleBySoap(Transform):
    """SOAP's direction: Adam in the eigenbasis of Shampoo's statistics.

    See the module docstring for the rule (Vyas et al. 2024,
    arXiv:2409.11321). Returns ``N·√(1 − β₂ᵗ⁻¹)/(1 − β₁ᵗ⁻¹)`` (without the
    factor when ``correct_bias`` is False; ``N`` divided by ``√mean(N²) + ε``
    first when ``normalize_gradient``); zeros on a parameter's first step,
    which only initializes the preconditioner. Reference:
    pytorch_optimizer.SOAP.

    State: ``exp_avg`` (first moment, the parameter's coordinates),
    ``exp_avg_sq`` (second moment, eigenbasis coordinates, laid out as the
    parameter, as the reference), ``exp_avg_projected`` (``exp_avg`` in the
    eigenbasis, when a dimension is preconditioned), and per preconditioned
    working dimension k: ``GG_k`` (the statistic) and ``Q_k`` (the basis).
    ``max_precondition_dim``, ``merge_dims``, ``precondition_1d`` and
    ``data_format`` decide the state's shapes, so they cannot change after a
    parameter's first step (ValueError).

    The multi-tensor path steps the tensors one by one: the work is matrix
    products, and torch has no multi-tensor matmul.
    """

    hypers = {
        "betas": Hyper((0.95, 0.95), betas_pair),
        "shampoo_beta": Hyper(None, _optional_beta),
        "precondition_frequency": Hyper(10, positive_int),
        "max_precondition_dim": Hyper(10000, positive_int),
        "merge_dims": Hyper(False, boolean),
        "precondition_1d": Hyper(False, boolean),
        "correct_bias": Hyper(True, boolean),
        "normalize_gradient": Hyper(False, boolean),
        "data_format": Hyper("channels_first", one_of("channels_first", "channels_last")),
        "eps": Hyper(1e-8, positive),
    }
    state_keys = ("exp_avg", "exp_avg_sq", "exp_avg_projected", "GG_0", "Q_0")
    #: laid out as the parameter, but in the eigenbasis's coordinates (see ChainOptimizer)
    rotated_state = ("exp_avg_sq", "exp_avg_projected")

    _LAYOUT_KEYS = ("max_precondition_dim", "merge_dims", "precondition_1d", "data_format")

    def _layout(self, shape: Sequence[int], group: Mapping[str, Any]) -> Layout:
        return Layout.of(shape, {k: self.hp(group, k) for k in self._LAYOUT_KEYS})

    def init_state(self, p, state, group):
        # p is the whole parameter (a DTensor when sharded): its shape is the global one.
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        layout = self._layout(p.shape, group)
        if layout.any:
            state["exp_avg_projected"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        for k, (d, pre) in enumerate(zip(layout.work, layout.pre)):
            if pre:
                # Plain tensors, identical on every rank (never DTensors).
                state[f"GG_{k}"] = torch.zeros(d, d, dtype=p.dtype, device=p.device)
                state[f"Q_{k}"] = torch.zeros(d, d, dtype=p.dtype, device=p.device)

    # -- pieces ---------------------------------------------------------------

    def _check_layout(self, layout: Layout, state: Mapping[str, Any]) -> None:
        for k, (d, pre) in enumerate(zip(layout.work, layout.pre)):
            gg = state.get(f"GG_{k}")
            if pre != (gg is not None) or (pre and gg.shape[0] != d):
                break
        else:
            if f"GG_{len(layout.work)}" not in state:
                return
        raise ValueError(
            f"SOAP's preconditioners were made for another layout of this parameter (shape "
            f"{layout.shape}); max_precondition_dim, merge_dims, precondition_1d and data_format "
            "cannot change after a parameter's first step"
        )

    @staticmethod
    def _rotate(x: Tensor, qs: Sequence[Tensor | None], back: bool) -> Tensor:
        """Apply ``Q_kᵀ`` (into the eigenbasis) or ``Q_k`` (``back``) along each dim k, in order."""
        for k, q in enumerate(qs):
            if q is not None:
                x = apply_along(x, q if back else q.T, k)
        return x

    def _accumulate(self, g: Tensor, layout: Layout, state: dict, group: Mapping[str, Any]) -> None:
        """``GG_k ← s·GG_k + (1 − s)·gram(G, k)`` for the preconditioned dims (G: the whole gradient)."""
        s = self.hp(group, "shampoo_beta")
        if s is None:
            s = self.hp(group, "betas")[1]
        work = layout.to_work(g)
        for k, pre in enumerate(layout.pre):
            if pre:
                gg = state[f"GG_{k}"]
                gg.lerp_(gram(work, k).to(gg.dtype), 1 - s)

    def _refresh(self, layout: Layout, state: dict) -> None:
        """One power iteration + QR per factor; permute ``exp_avg_sq`` to the new order,
        and project ``exp_avg`` into the new basis."""
        v_local = state["exp_avg_sq"]
        v = layout.to_work(sharded.full(v_local, state))
        for k, pre in enumerate(layout.pre):
            if not pre:
                continue
            gg, q = state[f"GG_{k}"], state[f"Q_{k}"]
            product = gg @ q
            estimated = (q * product).sum(dim=0)
            order = torch.argsort(estimated, descending=True)
            v = v.index_select(k, order)
            basis, _ = torch.linalg.qr(product.index_select(1, order).to(torch.float32))
            q.copy_(basis)
        v_local.copy_(sharded.shard(layout.from_work(v), state))
        qs = [state.get(f"Q_{k}") for k in range(len(layout.work))]
        m = layout.to_work(sharded.full(state["exp_avg"], state))
        projected = layout.from_work(self._rotate(m, qs, back=False))
        state["exp_avg_projected"].copy_(sharded.shard(projected, state))

    # -- the step -------------------------------------------------------------

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        eps = self.hp(group, "eps")
        t = state["step"]
        full_shape = sharded.shape(p, state)
        layout = self._layout(full_shape, group)
        self._check_layout(layout, state)
        qs = [state.get(f"Q_{k}") for k in range(len(layout.work))]

        if not layout.any:
            # No preconditioned dimension: Adam (bias-corrected from the second step),
            # elementwise, on the local shard.
            if t == 1:
                return torch.zeros_like(u)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(u, 1 - b1)
            v.lerp_(u.square(), 1 - b2)
            n = m / v.sqrt().add_(eps)
            if self.hp(group, "normalize_gradient"):
                if sharded.sharding(state) is None:
                    rms = torch.mean(n.square()).sqrt_()
                else:
                    (sq,) = sharded.all_reduce_sum([n.square().sum()], [state])
                    rms = (sq / full_shape.numel()).sqrt_()
                n.div_(rms.add_(eps))
            return self._bias_corrected(n, t, b1, b2, group)

        g = sharded.full(u, state)  # all-gather 1: the whole gradient
        if t == 1:
            self._accumulate(g, layout, state, group)
            for k, pre in enumerate(layout.pre):
                if pre:
                    state[f"Q_{k}"].copy_(eigenbasis(state[f"GG_{k}"]))
            return torch.zeros_like(u)

        m, v, mp = state["exp_avg"], state["exp_avg_sq"], state["exp_avg_projected"]
        m.lerp_(u, 1 - b1)
        # G' = Qᵀ·G (along each preconditioned dim), computed whole, used on this shard.
        gp = sharded.shard(layout.from_work(self._rotate(layout.to_work(g), qs, back=False)), state)
        mp.lerp_(gp, 1 - b1)  # = Qᵀ·exp_avg: projection is linear
        v.lerp_(gp.square(), 1 - b2)
        x = mp / v.sqrt().add_(eps)
        x = sharded.full(x, state)  # all-gather 2: the normalized direction
        n = layout.from_work(self._rotate(layout.to_work(x), qs, back=True))
        if self.hp(group, "normalize_gradient"):
            n = n.div_(torch.mean(n.square()).sqrt_().add_(eps))
        n = self._bias_corrected(n, t, b1, b2, group)

        self._accumulate(g, layout, state, group)
        if (t - 1) % self.hp(group, "precondition_frequency") == 0:
            self._refresh(layout, state)
        return sharded.shard(n, state)

    def _bias_corrected(self, n: Tensor, t: int, b1: float, b2: float, group: Mapping[str, Any]) -> Tensor:
        if not self.hp(group, "correct_bias"):
            return n
        # The first step only initialized the preconditioner: t − 1 updates so far.
        return n.mul_(math.sqrt(1 - math.pow(b2, t - 1)) / (1 - math.pow(b1, t - 1)))

    def update_foreach(self, updates, params, states, group):
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]


class DecayUpdatedWeights(Transform):
    """``p ← (p + u)·(1 − lr·λ)``: decoupled weight decay applied to the updated weights.

    Placed after ``scale_by_lr``, it returns ``(p + u)·(1 − lr·λ) − p``, so the
    step shrinks the weights *after* the update, as pytorch_optimizer.SOAP
    (and the SOAP authors' code) do, rather than before it (torch.optim.AdamW);
    the two differ by ``lr²·λ·u``. Reads ``weight_decay`` (λ) and ``lr``.
    With ``skip_first_step=True`` (SOAP) a parameter's first step, which only
    initializes the preconditioner, is not decayed either, as in the reference.
    """

    hypers = {"weight_decay": Hyper(0.0, nonnegative), "lr": Hyper(1e-3, learning_rate)}

    def __init__(self, *, skip_first_step: bool = False, keys: Mapping[str, str] | None = None, **defaults: Any):
        super().__init__(keys=keys, **defaults)
        self.skip_first_step = skip_first_step

    def _rate(self, group: Mapping[str, Any]) -> float:
        return self.hp(group, "weight_decay") * self.hp(group, "lr")

    def _skips(self, state: Mapping[str, Any]) -> bool:
        return self.skip_first_step and state["step"] == 1

    def update_tensor(self, u, p, state, group):
        lam = self._rate(group)
        if lam == 0 or self._skips(state):
            return u
        # ((p + u)·(1 − lr·λ)) − p: adding it to p gives the product exactly
        # (Sterbenz) wherever the step is small next to p, as the reference's
        # two roundings p + u, then × (1 − lr·λ).
        return torch.add(p, u).mul_(1 - lam).sub_(p)

    def update_foreach(self, updates, params, states, group):
        lam = self._rate(group)
        if lam == 0:
            return updates
        if any(self._skips(s) for s in states):
            return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]
        out = torch._foreach_add(params, updates)
        torch._foreach_mul_(out, 1 - lam)
        torch._foreach_sub_(out, params)
        return out


scale_by_soap = ScaleBySoap
decay_updated_weights = DecayUpdatedWeights
