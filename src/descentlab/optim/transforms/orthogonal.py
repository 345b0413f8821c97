"""Muon's pieces: momentum, Newton–Schulz orthogonalization, shape-adjusted lr.

Muon (Jordan et al., "Muon: An optimizer for hidden layers in neural
networks", 2024, https://kellerjordan.github.io/posts/muon/) replaces a 2-D
weight's momentum ``B`` by the nearest semi-orthogonal matrix ``UVᵀ`` (with
``B = USVᵀ``), approximated by a few Newton–Schulz iterations, so that every
singular direction of the update gets the same size. The form implemented is
torch.optim.Muon's (torch 2.9+), which follows Keller Jordan's reference code.

``muon`` (2-D weights) = ``ema_momentum → orthogonalize_via_newton_schulz →
scale_by_adjusted_lr`` followed by decoupled weight decay.
"""

from __future__ import annotations

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
    learning_rate,
    one_of,
    positive,
    unit_interval,
)

__all__ = [
    "EmaMomentum",
    "OrthogonalizeViaNewtonSchulz",
    "ScaleByAdjustedLr",
    "ema_momentum",
    "orthogonalize_via_newton_schulz",
    "scale_by_adjusted_lr",
    "newton_schulz",
    "newton_schulz_bf16_",
    "adjusted_lr_ratio",
]

#: Keller Jordan's quintic coefficients (a, b, c), chosen to maximize the slope at zero.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def _coefficients(value: Any) -> str | None:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 3
        or not all(_is_real(c) and math.isfinite(c) for c in value)
    ):
        return "a triple (a, b, c) of finite numbers"
    return None


def _ns_steps(value: Any) -> str | None:
    # torch rejects >= 100 ("for computational efficiency"); 0 steps is the
    # normalized momentum, which torch accepts too.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 100:
        return "an integer in [0, 100)"
    return None


class EmaMomentum(Transform):
    """Momentum as an exponential moving average, with a Nesterov look-ahead.

    With ``μ = momentum``::

        bₜ = μ·bₜ₋₁ + (1 − μ)·gₜ        (buffer, computed as lerp(b, g, 1 − μ))
        u  = (1 − μ)·gₜ + μ·bₜ          (nesterov, computed as lerp(g, b, μ))
        u  = bₜ                         (otherwise)

    This is the form torch.optim.Muon and Keller Jordan's Muon implement; their
    docstrings write ``bₜ = μ·bₜ₋₁ + g`` (heavy ball, as torch.optim.SGD's
    ``trace``), which differs from the code by the factor (1 − μ) on g. The
    EMA form is implemented. Under Muon the overall scale of u does not matter
    (the orthogonalization normalizes it) but the relative weight of g and b
    does. Reference: torch.optim.Muon. State: ``momentum_buffer`` (zeros at
    first), as torch.
    """

    hypers = {"momentum": Hyper(0.95, unit_interval), "nesterov": Hyper(True, boolean)}
    state_keys = ("momentum_buffer",)

    def init_state(self, p, state, group):
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def update_tensor(self, u, p, state, group):
        mu = self.hp(group, "momentum")
        buf = state["momentum_buffer"]
        buf.lerp_(u, 1 - mu)
        # The buffer itself is returned without nesterov: later transforms never
        # write into their input (the Transform contract).
        return u.lerp(buf, mu) if self.hp(group, "nesterov") else buf

    def update_foreach(self, updates, params, states, group):
        mu = self.hp(group, "momentum")
        bufs = [s["momentum_buffer"] for s in states]
        torch._foreach_lerp_(bufs, updates, 1 - mu)
        if not self.hp(group, "nesterov"):
            return bufs
        return torch._foreach_lerp(updates, bufs, mu)


def newton_schulz(g: Tensor, coefficients: Sequence[float], steps: int, eps: float) -> Tensor:
    """The quintic Newton–Schulz iteration of torch.optim.Muon, in bfloat16.

    For a wide ``X`` (a tall one is transposed first and back at the end)::

        X ← X / max(‖X‖_F, eps)              (spectral norm ≤ 1)
        repeat steps times:
            A = X·Xᵀ
            X ← a·X + (b·A + c·A²)·X

    which pushes every singular value of X towards ~1 (to roughly [0.7, 1.2]
    with the default coefficients, not exactly 1: Jordan et al. found that
    harmless). As torch and Keller Jordan do, it runs in bfloat16, whatever the
    dtype of ``g``, with the same operations in the same order (so the result is
    bitwise torch's); the result is returned in bfloat16. ``g`` is not modified.
    """
    if g.ndim != 2:
        raise ValueError(f"Newton–Schulz orthogonalization needs a 2-D matrix, got shape {tuple(g.shape)}")
    return newton_schulz_bf16_(g.to(torch.bfloat16, copy=True), coefficients, steps, eps)


def newton_schulz_bf16_(x: Tensor, coefficients: Sequence[float], steps: int, eps: float) -> Tensor:
    """:func:`newton_schulz` of a 2-D bfloat16 matrix that may be overwritten.

    The fused step (``fused/cpu_kernels.muon``) makes the bfloat16 copy in its
    momentum pass and calls this. A tall result is a transposed view.
    """
    a, b, c = coefficients
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x


class OrthogonalizeViaNewtonSchulz(Transform):
    """``u ← NS(u)``: the (approximate) orthogonalization ``UVᵀ`` of a 2-D update.

    See :func:`newton_schulz` for the iteration (``ns_coefficients`` (a, b, c),
    ``ns_steps``, ``eps``). It is computed in bfloat16, as torch.optim.Muon
    and Keller Jordan's Muon do, and returned in the update's dtype (exactly:
    the bfloat16 values are representable). Only 2-D tensors are accepted
    (ValueError at the step otherwise; ``optim.create("muon", ...)`` routes the
    other shapes to AdamW and rejects a ``use_muon=True`` group holding one).
    Reference: torch.optim.Muon. No state.

    The multi-tensor path runs the iteration tensor by tensor too (torch has
    no multi-tensor matmul); batching equal shapes with ``bmm`` would not be
    bitwise equal to the reference.
    """

    hypers = {
        "ns_coefficients": Hyper(NS_COEFFICIENTS, _coefficients),
        "ns_steps": Hyper(5, _ns_steps),
        "eps": Hyper(1e-7, positive),
    }

    def _orthogonalize(self, u: Tensor, group: Mapping[str, Any]) -> Tensor:
        o = newton_schulz(u, self.hp(group, "ns_coefficients"), self.hp(group, "ns_steps"), self.hp(group, "eps"))
        return o.to(u.dtype)

    def update_tensor(self, u, p, state, group):
        if sharded.sharding(state) is None:
            return self._orthogonalize(u, group)
        # A shard of the matrix: every process orthogonalizes the whole matrix
        # (gathered in bfloat16, the iteration's dtype) and keeps its own rows.
        o = self._orthogonalize(sharded.full(u.to(torch.bfloat16), state), group)
        return sharded.shard(o, state).to(u.dtype)

    def update_foreach(self, updates, params, states, group):
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]


def adjusted_lr_ratio(adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """The factor torch.optim.Muon multiplies ``lr`` by for a weight of ``shape`` (A, B, ...).

    * ``None`` or ``"original"`` (Keller Jordan): ``√max(1, A/B)``;
    * ``"match_rms_adamw"`` (Liu et al., "Muon is Scalable for LLM Training",
      2025, Moonlight): ``0.2·√max(A, B)``, which gives the update the RMS of an
      AdamW update so AdamW's lr and weight decay can be reused.

    For a tensor with fewer than two dimensions the factor is 1.
    """
    if len(shape) < 2:
        return 1.0
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


class ScaleByAdjustedLr(Transform):
    """``u ← −lr·r(shape)·u``: Muon's learning rate, adjusted to the weight's shape.

    ``r`` is :func:`adjusted_lr_ratio` (``adjust_lr_fn`` None / "original" /
    "match_rms_adamw"). Decoupled weight decay uses the unadjusted lr, as in
    torch.optim.Muon. Reference: torch.optim.Muon.
    """

    hypers = {
        "lr": Hyper(1e-3, learning_rate),
        "adjust_lr_fn": Hyper(None, one_of(None, "original", "match_rms_adamw")),
    }

    def _step(self, p: Tensor, group: Mapping[str, Any], state: Mapping[str, Any]) -> float:
        """``−lr·r``, with ``r`` from the parameter's global shape (``p`` may be a local shard)."""
        return -(self.hp(group, "lr") * adjusted_lr_ratio(self.hp(group, "adjust_lr_fn"), sharded.shape(p, state)))

    def update_tensor(self, u, p, state, group):
        return u.mul(self._step(p, group, state))

    def update_foreach(self, updates, params, states, group):
        return torch._foreach_mul(updates, [self._step(p, group, s) for p, s in zip(params, states)])


ema_momentum = EmaMomentum
orthogonalize_via_newton_schulz = OrthogonalizeViaNewtonSchulz
scale_by_adjusted_lr = ScaleByAdjustedLr
