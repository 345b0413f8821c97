"""Gradient clipping: by value, by global norm, and adaptive (AGC)."""

from __future__ import annotations

import torch

from ..base import Hyper, Transform, positive

__all__ = [
    "ClipByValue",
    "ClipByGlobalNorm",
    "AdaptiveClip",
    "clip_by_value",
    "clip_by_global_norm",
    "adaptive_clip",
]


class ClipByValue(Transform):
    """``u ← clamp(u, −c, c)`` elementwise; equals ``torch.nn.utils.clip_grad_value_``."""

    hypers = {"clip_value": Hyper(1.0, positive)}

    def update_tensor(self, u, p, state, group):
        c = self.hp(group, "clip_value")
        return u.clamp(-c, c)

    def update_foreach(self, updates, params, states, group):
        c = self.hp(group, "clip_value")
        out = torch._foreach_maximum(updates, -c)
        torch._foreach_minimum_(out, c)
        return out


class ClipByGlobalNorm(Transform):
    """Rescale so that the global L2 norm of the group's updates is at most ``max_norm``.

    ``u ← u · min(1, max_norm / (‖u‖ + 1e-6))``, the rule (and the 1e-6) of
    ``torch.nn.utils.clip_grad_norm_``, over the parameters of one param group.
    The norm before clipping is kept in ``last_norm`` so it can be logged.
    """

    hypers = {"max_norm": Hyper(1.0, positive)}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.last_norm: torch.Tensor | None = None

    def update(self, updates, params, states, group, foreach):
        if foreach:
            norms = torch._foreach_norm(updates)
        else:
            norms = [torch.linalg.vector_norm(u) for u in updates]
        total = torch.linalg.vector_norm(torch.stack(norms))
        self.last_norm = total
        coef = torch.clamp(self.hp(group, "max_norm") / (total + 1e-6), max=1.0)
        if foreach:
            return torch._foreach_mul(updates, coef)
        return [u * coef for u in updates]


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm per output unit: over all dims but the first; whole tensor for ndim ≤ 1."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


class AdaptiveClip(Transform):
    """Adaptive gradient clipping, AGC (Brock et al., "High-Performance
    Large-Scale Image Recognition Without Normalization", ICML 2021, eq. 3).

    Per unit ``i`` (a row of a weight)::

        max_i = clipping · max(‖Wᵢ‖, eps)
        Gᵢ ← Gᵢ · max_i / ‖Gᵢ‖   where ‖Gᵢ‖ > max_i

    Defaults follow the paper (``clipping=0.01``, ``eps=1e-3``).
    """

    hypers = {"clipping": Hyper(0.01, positive), "agc_eps": Hyper(1e-3, positive)}

    def update_tensor(self, u, p, state, group):
        max_norm = unitwise_norm(p).clamp(min=self.hp(group, "agc_eps")) * self.hp(group, "clipping")
        g_norm = unitwise_norm(u)
        clipped = u * (max_norm / g_norm.clamp(min=1e-6))
        return torch.where(g_norm > max_norm, clipped, u)

    def update_foreach(self, updates, params, states, group):
        # Unit-wise norms have per-tensor shapes, so this is a loop over tensors
        # around vectorized kernels; there is no torch._foreach form of it.
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]


clip_by_value = ClipByValue
clip_by_global_norm = ClipByGlobalNorm
adaptive_clip = AdaptiveClip
