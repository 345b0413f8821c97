"""Adafactor's pieces (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with
Sublinear Memory Cost", ICML 2018), in the form torch.optim.Adafactor implements.

``adafactor`` = ``scale_by_factored_rms → clip_by_block_rms →
scale_by_param_block_rms → scale_by_relative_step → decay_weights``:

* a second-moment estimate that, for a tensor with two or more dimensions, keeps
  only its row and column means over the last two dimensions (memory
  ``O(n + m)`` instead of ``O(n·m)``), with the decay ``β̂₂ₜ = 1 − t^τ``
  (``τ = beta2_decay``) instead of a constant β₂;
* update clipping ``u / max(1, RMS(u)/d)``;
* a step relative to the parameter's own scale, ``max(ε₂, RMS(p))``, times the
  relative step size ``ρₜ = min(lr, 1/√t)``.

``eps`` is the pair ``(ε₁, ε₂)`` of torch.optim.Adafactor; ``ε₁ = None`` means
the machine epsilon of the parameter's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .. import sharded
from ..base import Hyper, Transform, _is_real, learning_rate

__all__ = [
    "ScaleByFactoredRms",
    "ClipByBlockRms",
    "ScaleByParamBlockRms",
    "ScaleByRelativeStep",
    "scale_by_factored_rms",
    "clip_by_block_rms",
    "scale_by_param_block_rms",
    "scale_by_relative_step",
]


# -- checks -----------------------------------------------------------------------


def eps_pair(value: Any) -> str | None:
    """``(eps1, eps2)``: eps1 None (the dtype's machine epsilon) or a finite
    number > 0, eps2 a finite number >= 0 (torch.optim.Adafactor's ``eps``).

    torch accepts eps1 = 0, which turns a zero second moment into ``0·∞ = nan``;
    it is rejected here.
    """
    expected = "a pair (eps1, eps2) with eps1 None or a finite number > 0 and eps2 a finite number >= 0"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        return expected
    eps1, eps2 = value
    if eps1 is not None and (not _is_real(eps1) or not math.isfinite(eps1) or not eps1 > 0):
        return expected
    if not _is_real(eps2) or not math.isfinite(eps2) or not eps2 >= 0:
        return expected
    return None


def nonpositive(value: Any) -> str | None:
    if not _is_real(value) or not math.isfinite(value) or not value <= 0:
        return "a finite number <= 0"
    return None


def at_least_one(value: Any) -> str | None:
    if not _is_real(value) or not math.isfinite(value) or not value >= 1:
        return "a finite number >= 1"
    return None


def _rms_divisor(t: torch.Tensor, state=None) -> float:
    """√numel, the divisor that turns an L2 norm into an RMS (1 for an empty tensor);
    numel of the whole tensor when ``t`` is a local shard (``state`` a LocalState)."""
    n = t.numel() if state is None else sharded.numel(t, state)
    return math.sqrt(n) if n else 1.0


def _norm(t: torch.Tensor, state) -> float:
    """‖t‖₂ of the whole tensor (of which ``t`` may be a local shard), as a float."""
    if sharded.sharding(state) is None:
        return t.norm(2).item()
    (square,) = sharded.all_reduce_sum([t.norm(2).square()], [state])
    return square.sqrt().item()


# -- the second-moment estimate ------------------------------------------------------


class ScaleByFactoredRms(Transform):
    """Adafactor's factored second-moment scaling.

    With ``τ = beta2_decay``, ``(ε₁, ε₂) = eps`` and step ``t``, the decay is
    ``β̂₂ₜ = 1 − t^τ`` (so the running means are ``lerp(·, ·, t^τ)``). For a
    tensor with ndim ≥ 2, over its last two dimensions (rows i, columns j)::

        Rₜ = β̂₂ₜ·Rₜ₋₁ + (1 − β̂₂ₜ)·mean_j(g²)        (row_var,  shape [..., n, 1])
        Cₜ = β̂₂ₜ·Cₜ₋₁ + (1 − β̂₂ₜ)·mean_i(g²)        (col_var,  shape [..., 1, m])
        V̂ₜ = Rₜ·Cₜ / max(mean_i(Rₜ), ε₁)             (an outer product per leading index)

    and for a tensor with ndim ≤ 1 the full ``V̂ₜ = β̂₂ₜ·V̂ₜ₋₁ + (1 − β̂₂ₜ)·g²``
    (``variance``). The output is ``u = g / max(√V̂ₜ, ε₁)``, computed as
    ``g · rsqrt(max(V̂ₜ, ε₁²))``.

    This is torch.optim.Adafactor's form: means instead of the paper's sums
    (the same V̂), and ε₁ applied to the row-mean normalizer and to √V̂ rather
    than added to g² as in the paper (Algorithm 4) and in optax; the mean of
    g² over a row is computed as ``‖g_row‖²/n``, as torch does. ε₁ = None is
    ``torch.finfo(p.dtype).eps``, taken per parameter (torch takes the first
    parameter's dtype for the whole group). Reference: torch.optim.Adafactor.
    State: ``row_var`` and ``col_var``, or ``variance``, as torch.
    """

    hypers = {
        "beta2_decay": Hyper(-0.8, nonpositive),
        "eps": Hyper((None, 1e-3), eps_pair),
    }
    state_keys = ("row_var", "col_var", "variance")

    def init_state(self, p, state, group):
        if p.dim() > 1:
            state["row_var"] = sharded.zeros_reduced(p, -1)
            state["col_var"] = sharded.zeros_reduced(p, -2)
        else:
            state["variance"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _eps1(self, group, p) -> float:
        eps1 = self.hp(group, "eps")[0]
        return torch.finfo(p.dtype).eps if eps1 is None else eps1

    def update_tensor(self, u, p, state, group):
        weight = state["step"] ** self.hp(group, "beta2_decay")  # 1 − β̂₂ₜ
        eps1 = self._eps1(group, p)
        if u.dim() > 1 and sharded.sharding(state) is not None:
            return self._update_shard(u, state, weight, eps1)
        if u.dim() > 1:
            row_var, col_var = state["row_var"], state["col_var"]
            row_mean = torch.linalg.vector_norm(u, dim=-1, keepdim=True).square_().div_(u.size(-1))
            row_var.lerp_(row_mean, weight)
            col_mean = torch.linalg.vector_norm(u, dim=-2, keepdim=True).square_().div_(u.size(-2))
            col_var.lerp_(col_mean, weight)
            v_hat = row_var @ col_var
            v_hat.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
        else:
            variance = state["variance"]
            variance.lerp_(u * u, weight)
            v_hat = variance.clone()
        return v_hat.clamp_(min=eps1 * eps1).rsqrt_().mul_(u)

    def _update_shard(self, u, state, weight, eps1):
        """``update_tensor`` of a matrix's local shard: the means over a split
        dimension are all-reduced sums divided by its global size."""
        n, m = sharded.shape(u, state)[-2:]
        row_var, col_var = state["row_var"], state["col_var"]
        squares = u * u
        row_sum, col_sum = squares.sum(dim=-1, keepdim=True), squares.sum(dim=-2, keepdim=True)
        (row_sum,) = sharded.all_reduce_sum([row_sum], [state], dims=(-1,))
        (col_sum,) = sharded.all_reduce_sum([col_sum], [state], dims=(-2,))
        row_var.lerp_(row_sum.div_(m), weight)
        col_var.lerp_(col_sum.div_(n), weight)
        (row_total,) = sharded.all_reduce_sum([row_var.sum(dim=-2, keepdim=True)], [state], dims=(-2,))
        v_hat = row_var @ col_var
        v_hat.div_(row_total.div(n).clamp_(min=eps1))
        return v_hat.clamp_(min=eps1 * eps1).rsqrt_().mul_(u)

    def update_foreach(self, updates, params, states, group):
        if any(sharded.sharding(s) is not None for s in states):
            return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]
        tau = self.hp(group, "beta2_decay")
        out: list[Any] = [None] * len(updates)
        matrix = [i for i, u in enumerate(updates) if u.dim() > 1]
        vector = [i for i, u in enumerate(updates) if u.dim() <= 1]
        for idx in (matrix, vector):
            if not idx:
                continue
            us = [updates[i] for i in idx]
            weights = [states[i]["step"] ** tau for i in idx]
            eps1 = [self._eps1(group, params[i]) for i in idx]
            if idx is matrix:
                row_vars = [states[i]["row_var"] for i in idx]
                col_vars = [states[i]["col_var"] for i in idx]
                row_means = [torch.linalg.vector_norm(u, dim=-1, keepdim=True) for u in us]
                torch._foreach_mul_(row_means, row_means)
                torch._foreach_div_(row_means, [u.size(-1) for u in us])
                torch._foreach_lerp_(row_vars, row_means, weights)
                col_means = [torch.linalg.vector_norm(u, dim=-2, keepdim=True) for u in us]
                torch._foreach_mul_(col_means, col_means)
                torch._foreach_div_(col_means, [u.size(-2) for u in us])
                torch._foreach_lerp_(col_vars, col_means, weights)
                v_hat = [r @ c for r, c in zip(row_vars, col_vars)]
                norms = [r.mean(dim=-2, keepdim=True) for r in row_vars]
                torch._foreach_clamp_min_(norms, eps1)
                torch._foreach_div_(v_hat, norms)
                torch._foreach_clamp_min_(v_hat, [e * e for e in eps1])
            else:
                variances = [states[i]["variance"] for i in idx]
                torch._foreach_lerp_(variances, torch._foreach_mul(us, us), weights)
                v_hat = torch._foreach_clamp_min(variances, [e * e for e in eps1])  # a copy
            torch._foreach_rsqrt_(v_hat)
            torch._foreach_mul_(v_hat, us)
            for i, v in zip(idx, v_hat):
                out[i] = v
        return out


# -- clipping and the relative step ---------------------------------------------------


class ClipByBlockRms(Transform):
    """Update clipping per tensor: ``u ← u / max(1, RMS(u)/d)``.

    ``RMS(u) = ‖u‖₂/√numel``; ``d`` is the clipping threshold (paper §6, d = 1).
    Reference: torch.optim.Adafactor (optax: ``clip_by_block_rms``).
    """

    hypers = {"d": Hyper(1.0, at_least_one)}

    def update_tensor(self, u, p, state, group):
        d = self.hp(group, "d")
        denom = max(1.0, _norm(u, state) / (_rms_divisor(u, state) * d))
        return u if denom == 1.0 else u.div(denom)

    def update_foreach(self, updates, params, states, group):
        if any(sharded.sharding(s) is not None for s in states):
            return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]
        d = self.hp(group, "d")
        denoms = torch._foreach_norm(updates)
        torch._foreach_div_(denoms, [_rms_divisor(u) * d for u in updates])
        torch._foreach_clamp_min_(denoms, 1.0)
        return torch._foreach_div(updates, denoms)


class ScaleByParamBlockRms(Transform):
    """Parameter-scale step: ``u ← max(ε₂, RMS(p))·u`` (paper §8, "relative step").

    ``RMS(p) = ‖p‖₂/√numel`` of the parameter *before* this step's update; ε₂
    is the second element of ``eps`` (torch.optim.Adafactor's ``eps``), so a
    parameter initialized at zero still moves. Reference: torch.optim.Adafactor
    (optax: ``scale_by_param_block_rms``).
    """

    hypers = {"eps": Hyper((None, 1e-3), eps_pair)}

    def update_tensor(self, u, p, state, group):
        eps2 = self.hp(group, "eps")[1]
        return u.mul(max(eps2, _norm(p, state) / _rms_divisor(p, state)))

    def update_foreach(self, updates, params, states, group):
        if any(sharded.sharding(s) is not None for s in states):
            return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]
        eps2 = self.hp(group, "eps")[1]
        scales = torch._foreach_norm(params)
        torch._foreach_div_(scales, [_rms_divisor(p) for p in params])
        torch._foreach_clamp_min_(scales, eps2)
        return torch._foreach_mul(updates, scales)


class ScaleByRelativeStep(Transform):
    """The relative step size, and the sign of a descent step:
    ``u ← −ρₜ·u`` with ``ρₜ = min(lr, 1/√t)``.

    The paper uses ``min(10⁻², 1/√t)``; torch.optim.Adafactor lets ``lr``
    replace the constant 10⁻² (its default), which is the form implemented, so
    a scheduler acting on ``lr`` caps the relative step. Reference:
    torch.optim.Adafactor.
    """

    hypers = {"lr": Hyper(1e-3, learning_rate)}

    def _rho(self, group, state) -> float:
        return min(self.hp(group, "lr"), 1 / (state["step"] ** 0.5))

    def update_tensor(self, u, p, state, group):
        return u.mul(-self._rho(group, state))

    def update_foreach(self, updates, params, states, group):
        return torch._foreach_mul(updates, [-self._rho(group, s) for s in states])


scale_by_factored_rms = ScaleByFactoredRms
clip_by_block_rms = ClipByBlockRms
scale_by_param_block_rms = ScaleByParamBlockRms
scale_by_relative_step = ScaleByRelativeStep
