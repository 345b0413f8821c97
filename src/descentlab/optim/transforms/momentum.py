"""Momentum: heavy-ball and Nesterov, as torch.optim.SGD defines them."""

from __future__ import annotations

import torch

from ..base import Hyper, Transform, boolean, nonnegative

__all__ = ["Trace", "trace"]


class Trace(Transform):
    """Heavy-ball or Nesterov momentum (Polyak 1964; Sutskever et al. 2013).

    With ``μ = momentum`` and ``τ = dampening``::

        b₁ = g₁                        (first step: no dampening, as torch)
        bₜ = μ·bₜ₋₁ + (1 − τ)·gₜ
        u  = bₜ                        (heavy ball)
        u  = gₜ + μ·bₜ                 (Nesterov, the form torch.optim.SGD uses)

    ``momentum == 0`` makes it a no-op with no state, as in torch. Reference:
    torch.optim.SGD. State: ``momentum_buffer``.
    """

    hypers = {
        "momentum": Hyper(0.0, nonnegative),
        "dampening": Hyper(0.0, nonnegative),
        "nesterov": Hyper(False, boolean),
    }
    state_keys = ("momentum_buffer",)

    def validate_group(self, group):
        mu, tau = self.hp(group, "momentum"), self.hp(group, "dampening")
        if self.hp(group, "nesterov") and (mu <= 0 or tau != 0):
            raise ValueError(
                f"invalid nesterov=True with momentum={mu!r}, dampening={tau!r}: "
                "expected Nesterov momentum to have momentum > 0 and dampening = 0"
            )

    def update_tensor(self, u, p, state, group):
        mu = self.hp(group, "momentum")
        if mu == 0:
            return u
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = u.clone()
        else:
            buf.mul_(mu).add_(u, alpha=1 - self.hp(group, "dampening"))
        return u.add(buf, alpha=mu) if self.hp(group, "nesterov") else buf.clone()

    def update_foreach(self, updates, params, states, group):
        mu = self.hp(group, "momentum")
        if mu == 0:
            return updates
        fresh = [i for i, s in enumerate(states) if s.get("momentum_buffer") is None]
        old = [i for i, s in enumerate(states) if s.get("momentum_buffer") is not None]
        if old:
            bufs = [states[i]["momentum_buffer"] for i in old]
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, [updates[i] for i in old], alpha=1 - self.hp(group, "dampening"))
        if fresh:
            copies = torch._foreach_add([updates[i] for i in fresh], 0.0)
            for i, c in zip(fresh, copies):
                states[i]["momentum_buffer"] = c
        bufs = [s["momentum_buffer"] for s in states]
        if self.hp(group, "nesterov"):
            return torch._foreach_add(updates, bufs, alpha=mu)
        return torch._foreach_mul(bufs, 1.0)


trace = Trace
