"""Layer-wise trust ratios (LAMB, LARS) and LARS's momentum.

A trust ratio rescales each parameter tensor's update by ``‖p‖ / ‖u‖``, so that
every layer moves by the same fraction of its norm whatever the size of its
gradient: the idea of LARS (You, Gitman & Ginsburg 2017), taken over by LAMB
(You et al., ICLR 2020).

* :class:`ScaleByTrustRatio` is the general rule, ``u ← η·‖p‖/‖u‖ · u``
  (optax's ``scale_by_trust_ratio``); LAMB applies it with ``η = 1`` to the
  Adam direction plus weight decay.
* :class:`ScaleByLarsTrustRatio` is LARS's local learning rate, whose
  denominator is ``‖g‖ + λ‖p‖`` rather than ``‖g + λp‖``.
* :class:`TraceFromZero` is the momentum of pytorch_optimizer's LARS: a buffer
  that starts at zero, so dampening applies from the first step (torch's SGD
  momentum, ``trace``, starts the buffer at the first gradient instead).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import sharded
from ..base import Hyper, Transform, nonnegative
from .momentum import Trace

__all__ = [
    "ScaleByTrustRatio",
    "ScaleByLarsTrustRatio",
    "TraceFromZero",
    "scale_by_trust_ratio",
    "scale_by_lars_trust_ratio",
    "trace_from_zero",
]


def _sharded_norms(tensors: list[Tensor], states: list[dict]) -> list[Tensor]:
    """The L2 norms of the whole tensors of which ``tensors`` are local shards
    (one all-reduce of the squared local norms)."""
    squares = [torch.linalg.vector_norm(t).square() for t in tensors]
    return [s.sqrt() for s in sharded.all_reduce_sum(squares, states)]


class ScaleByTrustRatio(Transform):
    """``u ← η·‖p‖/‖u‖ · u`` per parameter tensor (1 instead of the ratio where
    ``‖p‖ = 0`` or ``‖u‖ = 0``).

    ``η = trust_coefficient``. The ratio uses ``φ(‖p‖) = ‖p‖`` (the identity
    scaling function of the LAMB paper) with no ε and no clamp; the
    "ratio 1 at a zero norm" rule keeps zero-initialized tensors (biases)
    moving, as in pytorch_optimizer, optax and tinygrad. Used by LAMB (η = 1,
    after ``add_decayed_weights``): You et al., "Large Batch Optimization for
    Deep Learning: Training BERT in 76 minutes", ICLR 2020, Algorithm 2.

    Subclasses change three hooks: which tensors are scaled (``applies_to``),
    the tensor the ratio multiplies (``direction``) and the denominator
    (``denominator``); the norms, the zero rule and the for-loop /
    multi-tensor paths are shared.
    """

    hypers = {"trust_coefficient": Hyper(1.0, nonnegative)}

    # -- hooks ------------------------------------------------------------------

    def applies_to(self, p: Tensor) -> bool:
        """Whether ``p``'s update is rescaled (others pass through unchanged)."""
        return True

    def direction(self, u: Tensor, p: Tensor, group) -> Tensor:
        """The tensor the ratio multiplies (a new tensor or ``u`` itself)."""
        return u

    def direction_foreach(self, updates: list[Tensor], params: list[Tensor], group) -> list[Tensor]:
        return updates

    def denominator(self, u_norm: Tensor, p_norm: Tensor, group) -> Tensor:
        """The ratio's denominator from ``‖u‖`` and ``‖p‖`` (0-dim or stacked)."""
        return u_norm

    # -- the rule ---------------------------------------------------------------

    def ratio(self, u_norm: Tensor, p_norm: Tensor, group) -> Tensor:
        den = self.denominator(u_norm, p_norm, group)
        scaled = self.hp(group, "trust_coefficient") * p_norm / den
        return torch.where((p_norm > 0) & (den > 0), scaled, torch.ones_like(scaled))

    def update_tensor(self, u, p, state, group):
        if not self.applies_to(p):
            return u
        if sharded.sharding(state) is None:
            u_norm, p_norm = torch.linalg.vector_norm(u), torch.linalg.vector_norm(p)
        else:
            u_norm, p_norm = _sharded_norms([u, p], [state, state])
        r = self.ratio(u_norm, p_norm, group)
        d = self.direction(u, p, group)
        # ``d`` may be the incoming update (possibly the gradient): no in-place op.
        return d * r

    def update_foreach(self, updates, params, states, group):
        picked = [i for i, p in enumerate(params) if self.applies_to(p)]
        if not picked:
            return updates
        us = [updates[i] for i in picked]
        ps = [params[i] for i in picked]
        sts = [states[i] for i in picked]
        if all(sharded.sharding(s) is None for s in sts):
            u_norms = torch.stack(torch._foreach_norm(us))
            p_norms = torch.stack(torch._foreach_norm(ps))
        else:
            norms = _sharded_norms(us + ps, sts + sts)
            u_norms, p_norms = torch.stack(norms[: len(us)]), torch.stack(norms[len(us):])
        ratios = self.ratio(u_norms, p_norms, group).unbind()
        scaled = torch._foreach_mul(self.direction_foreach(us, ps, group), ratios)
        out = list(updates)
        for i, s in zip(picked, scaled):
            out[i] = s
        return out


class ScaleByLarsTrustRatio(ScaleByTrustRatio):
    """LARS's layer-wise rate, with the weight decay inside it.

    You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
    2017, Algorithm 1. With ``η = trust_coefficient`` and ``λ = weight_decay``,
    for a parameter with ``p.ndim > 1``::

        ratio = η·‖p‖ / (‖g‖ + λ·‖p‖)      (1 where ‖p‖ = 0 or the denominator is 0)
        u     = ratio · (g + λ·p)

    and ``u = g`` (no ratio, *no weight decay*) for scalars and vectors (biases,
    normalization weights), as pytorch_optimizer.LARS does. The denominator is
    the paper's ``‖g‖ + λ‖p‖``, not ``‖g + λp‖`` (optax's LARS, which adds the
    decay first and applies :class:`ScaleByTrustRatio`). Reference:
    ``pytorch_optimizer.LARS``.
    """

    hypers = {
        "trust_coefficient": Hyper(1e-3, nonnegative),
        "weight_decay": Hyper(0.0, nonnegative),
    }

    def applies_to(self, p):
        return p.ndim > 1

    def direction(self, u, p, group):
        return u.add(p, alpha=self.hp(group, "weight_decay"))

    def direction_foreach(self, updates, params, group):
        return torch._foreach_add(updates, params, alpha=self.hp(group, "weight_decay"))

    def denominator(self, u_norm, p_norm, group):
        return u_norm + self.hp(group, "weight_decay") * p_norm


class TraceFromZero(Trace):
    """Momentum whose buffer starts at zero (pytorch_optimizer's LARS)::

        b₀ = 0
        bₜ = μ·bₜ₋₁ + (1 − τ)·gₜ
        u  = bₜ                        (heavy ball)
        u  = gₜ + μ·bₜ                 (Nesterov)

    The same arithmetic as :class:`~descentlab.optim.transforms.momentum.Trace`
    from the second step on; on the first step ``trace`` (torch.optim.SGD) sets
    ``b₁ = g₁`` while this sets ``b₁ = (1 − τ)·g₁``: they agree exactly when
    the dampening ``τ`` is 0. Nesterov with dampening is allowed here, as in
    the reference; Nesterov without momentum is not. ``momentum == 0`` is a
    no-op with no state. State: ``momentum_buffer``.
    """

    def validate_group(self, group):
        mu = self.hp(group, "momentum")
        if self.hp(group, "nesterov") and mu <= 0:
            raise ValueError(
                f"invalid nesterov=True with momentum={mu!r}: expected Nesterov momentum to "
                "have momentum > 0"
            )

    def _zero_buffers(self, params, states, group):
        # A zero buffer makes ``Trace`` take its b ← μ·b + (1 − τ)·g branch from the
        # first step on. Created lazily so that a momentum switched on later
        # also starts from zero.
        if self.hp(group, "momentum") == 0:
            return
        for p, s in zip(params, states):
            if s.get("momentum_buffer") is None:
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def update_tensor(self, u, p, state, group):
        self._zero_buffers([p], [state], group)
        return super().update_tensor(u, p, state, group)

    def update_foreach(self, updates, params, states, group):
        self._zero_buffers(params, states, group)
        return super().update_foreach(updates, params, states, group)


scale_by_trust_ratio = ScaleByTrustRatio
scale_by_lars_trust_ratio = ScaleByLarsTrustRatio
trace_from_zero = TraceFromZero
