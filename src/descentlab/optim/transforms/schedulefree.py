"""Schedule-free AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky,
"The Road Less Scheduled", NeurIPS 2024)."""

from __future__ import annotations

from typing import Any

import torch

from ..base import Hyper, Transform, betas_pair, learning_rate, nonnegative, positive

__all__ = ["ScheduleFreeAdamWStep", "schedule_free_adamw_step"]

#: Group-level quantities kept in the param group (as schedulefree does), so
#: that ``state_dict()`` / ``load_state_dict()`` carry them.
GROUP_KEYS = ("train_mode", "lr_max", "weight_sum", "scheduled_lr", "schedule_free_step")


def _nonnegative_int(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return "an integer >= 0"
    return None


def _use_foreach(group, params) -> bool:
    """The chain's rule (its ``foreach`` key, else the multi-tensor path on GPUs)."""
    if group.get("foreach") is not None:
        return bool(group["foreach"])
    return all(p.is_cuda for p in params)


class ScheduleFreeAdamWStep(Transform):
    """Schedule-free AdamW's step; the parameters hold ``y`` in train mode, ``x`` in eval mode.

    It produces the step itself (it reads ``lr``): it is the last transform of a
    chain, not to be followed by ``scale_by_lr``. Schedule-free keeps two
    sequences besides the parameters: ``z`` (plain AdamW-preconditioned SGD
    steps, in the state) and the average ``x`` of the ``z``'s; the gradient is
    taken at their interpolation ``y``. With ``(β₁, β₂) = betas``, step
    ``t = k + 1`` of the group, warmup ``w = warmup_steps`` and ``λ = weight_decay``::

        γₜ     = lr·min(1, t/w)                    (linear warmup; lr if w = 0)
        γ_max  = max(γ_max, γₜ)
        cₜ     = tʳ·γ_maxᵖ / Σ_{i≤t} iʳ·γ_max,ᵢᵖ     (p = weight_lr_power)
        v      = β₂·v + (1 − β₂)·g²
        ĝ      = g / (√(v/(1 − β₂ᵗ)) + ε) + λ·y     (decay taken at y)
        z_new  = z − γₜ·ĝ
        x_new  = (1 − cₜ)·x + cₜ·z_new
        y_new  = (1 − β₁)·z_new + β₁·x_new

    carried out on ``y`` alone, as ``schedulefree.AdamWScheduleFree`` (1.4.1)
    does, without storing ``x``::

        y ← lerp(y, z, cₜ) + γₜ·(β₁·(1 − cₜ) − 1)·ĝ;   z ← z − γₜ·ĝ

    The paper's Algorithm 1 (with an AdamW base, its section 4 warmup and
    weighting ``cₜ``); there is no first moment: β₁ is the interpolation
    weight, as in the reference. ``optimizer.eval()`` sets the parameters to
    ``x = lerp(y, z, 1 − 1/β₁)``, ``optimizer.train()`` back to
    ``y = lerp(x, z, 1 − β₁)`` (``on_mode``, in place; equal to within a few
    ulps, not bitwise, after a round trip).

    Modes: the reference starts in eval mode and must be sent ``.train()``
    before its first step. Here a group starts in **train mode** (the
    parameters are ``x = y = z`` until the first step, so the two modes agree
    then), so it is usable like any optimizer; calling ``step()`` in eval mode
    raises RuntimeError, as in the reference, because the gradient would have
    been taken at ``x`` rather than ``y``. Evaluate (and save checkpoints) in
    eval mode, as the reference recommends: the mode is saved with the group.

    The step is returned as ``u = y_new − y`` computed from ``y_new``, which
    the chain's ``y + u`` reproduces exactly wherever ``y_new`` and ``y`` are
    within a factor 2 (Sterbenz), i.e. everywhere but where a step is as large
    as the parameter; within float32 tolerance of the reference in any case.
    Group-level quantities, in the param group: ``train_mode``, ``lr_max``,
    ``weight_sum``, ``scheduled_lr`` (the reference's names) and
    ``schedule_free_step`` (the reference's ``k``). State: ``z``, ``exp_avg_sq``.
    """

    hypers = {
        "lr": Hyper(1e-3, learning_rate),
        "betas": Hyper((0.9, 0.999), betas_pair),
        "eps": Hyper(1e-8, positive),
        "weight_decay": Hyper(0.0, nonnegative),
        "warmup_steps": Hyper(0, _nonnegative_int),
        "r": Hyper(0.0, nonnegative),
        "weight_lr_power": Hyper(2.0, nonnegative),
    }
    state_keys = ("z", "exp_avg_sq")

    def validate_group(self, group):
        betas = self.hp(group, "betas")
        if betas[0] == 0:
            raise ValueError(
                f"invalid betas={betas!r}: expected beta1 > 0 for schedule-free "
                "(eval mode sets x = y + (1 - 1/beta1)·(z - y))"
            )

    def init_state(self, p, state, group):
        state["z"] = p.clone(memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _schedule(self, group) -> tuple[float, float, float]:
        """Advance the group's clock: (bias correction 1 − β₂ᵗ, γₜ, cₜ)."""
        for key, start in (("train_mode", True), ("lr_max", -1.0), ("weight_sum", 0.0),
                           ("scheduled_lr", 0.0), ("schedule_free_step", 0)):
            group.setdefault(key, start)
        if not group["train_mode"]:
            raise RuntimeError(
                "adamw_schedulefree: step() called in eval mode; call optimizer.train() "
                "before training (in eval mode the parameters hold x, and the gradient "
                "must be taken at y)"
            )
        _, beta2 = self.hp(group, "betas")
        k = group["schedule_free_step"]
        warmup = self.hp(group, "warmup_steps")
        sched = (k + 1) / warmup if k < warmup else 1.0
        lr = self.hp(group, "lr") * sched
        group["scheduled_lr"] = lr
        lr_max = group["lr_max"] = max(lr, group["lr_max"])
        weight = ((k + 1) ** self.hp(group, "r")) * (lr_max ** self.hp(group, "weight_lr_power"))
        weight_sum = group["weight_sum"] = group["weight_sum"] + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        group["schedule_free_step"] = k + 1
        return 1 - beta2 ** (k + 1), lr, ckp1

    def update(self, updates, params, states, group, foreach):
        bias_correction2, lr, ckp1 = self._schedule(group)
        beta1, beta2 = self.hp(group, "betas")
        eps, decay = self.hp(group, "eps"), self.hp(group, "weight_decay")
        y_coef = lr * (beta1 * (1 - ckp1) - 1)
        vs = [s["exp_avg_sq"] for s in states]
        zs = [s["z"] for s in states]
        if foreach:
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, updates, updates, value=1 - beta2)
            denom = torch._foreach_div(vs, bias_correction2)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            normed = torch._foreach_div(updates, denom)
            if decay != 0:
                torch._foreach_add_(normed, params, alpha=decay)
            out = torch._foreach_lerp(params, zs, ckp1)
            torch._foreach_add_(out, normed, alpha=y_coef)
            torch._foreach_sub_(out, params)
            torch._foreach_sub_(zs, normed, alpha=lr)
            return out
        out = []
        for u, y, v, z in zip(updates, params, vs, zs):
            v.mul_(beta2).addcmul_(u, u, value=1 - beta2)
            normed = u.div(v.div(bias_correction2).sqrt_().add_(eps))
            if decay != 0:
                normed.add_(y, alpha=decay)
            y_new = torch.lerp(y, z, ckp1).add_(normed, alpha=y_coef)
            z.sub_(normed, alpha=lr)
            out.append(y_new.sub_(y))
        return out

    def on_mode(self, mode, params, states, group):
        """``eval``: y → x = lerp(y, z, 1 − 1/β₁); ``train``: x → y = lerp(x, z, 1 − β₁)."""
        train_mode = group.get("train_mode", True)
        if mode == "eval" and train_mode:
            weight = 1 - 1 / self.hp(group, "betas")[0]
        elif mode == "train" and not train_mode:
            weight = 1 - self.hp(group, "betas")[0]
        else:
            return
        pairs = [(p, s["z"]) for p, s in zip(params, states) if "z" in s]
        if pairs:
            ps, zs = (list(x) for x in zip(*pairs))
            with torch.no_grad():
                if _use_foreach(group, ps):
                    torch._foreach_lerp_(ps, zs, weight)
                else:
                    for p, z in zip(ps, zs):
                        p.lerp_(z, weight)
        group["train_mode"] = mode == "train"


schedule_free_adamw_step = ScheduleFreeAdamWStep
