"""Prodigy: Adam whose step size is a running estimate of the distance to the
solution (Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
Parameter-Free Learner", ICML 2024)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import sharded
from ..base import (
    Hyper,
    Transform,
    betas_pair,
    boolean,
    learning_rate,
    nonnegative,
    positive,
    unit_interval,
)

__all__ = ["ProdigyStep", "prodigy_step"]

#: Group-level quantities kept in the param group (as pytorch_optimizer does),
#: so that ``state_dict()`` / ``load_state_dict()`` carry them.
GROUP_KEYS = ("d", "d_max", "d_hat", "d_numerator", "d_de_nom", "prodigy_step")


def _optional_beta(value: Any) -> str | None:
    if value is None or unit_interval(value) is None:
        return None
    return "None (sqrt(beta2)) or a number in [0, 1)"


def _optional_eps(value: Any) -> str | None:
    if value is None or positive(value) is None:
        return None
    return "None (atan2 update) or a finite number > 0"


def _growth_rate(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
        return None  # float("inf") (no limit) is the default
    return "a number >= 1 (or inf)"


def _dot(u, x, state):
    """⟨u, x⟩; on a local shard in double, as the fused kernel sums: the shards' sums
    are added next, and r amplifies their rounding (see ProdigyStep._estimate)."""
    if sharded.sharding(state) is None:
        return torch.dot(u.flatten(), x.flatten())
    return torch.dot(u.flatten().double(), x.flatten().double())


def _l1(s, state):
    """‖s‖₁; on a local shard in double, as :func:`_dot`."""
    return s.abs().sum() if sharded.sharding(state) is None else s.abs().sum(dtype=torch.float64)


def group_sums(dots: list, l1s: list, states: list[dict]) -> tuple[list, list]:
    """The per-tensor ⟨g, x₀ − x⟩ and ‖s‖₁ of whole tensors from those of local
    shards (one all-reduce for the group; unchanged when nothing is sharded)."""
    summed = sharded.all_reduce_sum([*dots, *l1s], [*states, *states])
    return summed[: len(dots)], summed[len(dots):]


class ProdigyStep(Transform):
    """Prodigy's step, with its distance estimate ``d`` shared by the param group.

    It produces the step itself (it reads ``lr``): it is the last transform of a
    chain, not to be followed by ``scale_by_lr``. With ``(β₁, β₂) = betas``,
    ``β₃ = beta3`` (``√β₂`` when None), step ``t`` of the group, the initial
    parameters ``x₀`` and ``d₀ = d0``::

        γ      = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)  if bias_correction  else lr
        η      = d·γ                               (the step size, d of step t−1)
        g      = g + λ·x                           (weight_decouple=False only)
        r      = β₃·r + (d/d₀)·η·Σᵢ ⟨gᵢ, x₀ᵢ − xᵢ⟩           (over the group)
        m      = β₁·m + d·(1 − β₁)·g
        v      = β₂·v + d²·(1 − β₂)·g²
        s      = β₃·s + (d/d₀)·(d if safeguard_warmup else η)·g
        d̂      = d_coef·r / Σᵢ ‖sᵢ‖₁
        d      = max(d, d̂) if d = d₀ (first growth: unlimited)
        d_max  = max(d_max, d̂);   d = min(d_max, d·growth_rate)
        x      = x·(1 − λ·η)  (decoupled; x·(1 − λ) if fixed_decay)
        x      = x − η·m/(√v + d·ε)      (the new d in ε·d; x − η·atan2(m, √v) if eps is None)

    That is the arithmetic of ``pytorch_optimizer.Prodigy`` (4.1.0; its names
    and defaults): the paper's Adam form (section 5, "Deriving Adam-Like Step
    Sizes", with the (1 − β₃) factors of r and s dropped as they cancel in d̂),
    plus the ``d/d₀`` rescaling of ``r`` and ``s`` of the implementations, the
    step taken with the estimate of the previous step and ε scaled by the new
    one. When ``Σ‖s‖₁ = 0`` (e.g. only zero gradients so far) nothing moves,
    as in the reference.

    Differences from the reference, both deliberate:

    * ``d`` is estimated per param group: the reference shares one ``d`` over
      all groups and uses the *first* group's ``lr``, ``betas``, ``beta3`` and
      ``d0`` for every group (other groups' ``lr`` is ignored). With one group
      (the usual case) they are equal; with several, each group here is what
      a separate reference optimizer over that group computes. Note that
      ``exclude_from_decay`` splits groups, hence gives the excluded
      parameters their own ``d``.
    * ``weight_decouple=False`` adds ``λ·x`` to the gradient *before* the
      moments and the estimate, as the original implementation
      (facebookresearch/prodigy) does; pytorch_optimizer adds it to ``p.grad``
      after the gradient was used, so there it has no effect.

    The group-level quantities live in the param group under ``d``, ``d_max``,
    ``d_hat``, ``d_numerator``, ``d_de_nom`` (the reference's names, as Python
    floats here) and ``prodigy_step`` (the group's step count ``t``), so
    ``state_dict()`` round trips resume exactly. ``r``, ``Σ‖s‖₁`` and ``d̂``
    are computed as the reference does, in a float32 accumulator (float64 for
    float64 parameters, where the reference uses torch's default dtype), one
    tensor at a time; ``d`` is then a Python float (one device
    synchronization per step, as the reference's ``.item()``).
    State: ``s``, ``p0``, ``exp_avg``, ``exp_avg_sq`` (the reference's names).
    """

    hypers = {
        "lr": Hyper(1e-3, learning_rate),
        "betas": Hyper((0.9, 0.999), betas_pair),
        "beta3": Hyper(None, _optional_beta),
        "d0": Hyper(1e-6, positive),
        "d_coef": Hyper(1.0, positive),
        "growth_rate": Hyper(float("inf"), _growth_rate),
        "weight_decay": Hyper(0.0, nonnegative),
        "weight_decouple": Hyper(True, boolean),
        "fixed_decay": Hyper(False, boolean),
        "bias_correction": Hyper(False, boolean),
        "safeguard_warmup": Hyper(False, boolean),
        "eps": Hyper(1e-8, _optional_eps),
    }
    state_keys = ("s", "p0", "exp_avg", "exp_avg_sq")

    def init_state(self, p, state, group):
        state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["p0"] = p.clone(memory_format=torch.preserve_format)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _estimate(self, group, params, dots, l1s, alpha, beta3):
        """``r``, ``Σ‖s‖₁`` and ``d̂`` as Python floats (one device synchronization).

        The sums are accumulated one tensor at a time into a float32 (float64
        for float64 parameters) accumulator, in the order and with the
        operations of the reference: ``r`` is a sum of terms of both signs
        whose float32 rounding, through the jumps of ``d``, moves the
        parameters by more than 1e-5 when it is accumulated otherwise.
        """
        wide = any(p.dtype == torch.float64 for p in params)
        dtype = torch.float64 if wide else torch.float32
        device = params[0].device
        numerator = torch.tensor([group["d_numerator"]], dtype=dtype, device=device)
        numerator.mul_(beta3)
        for x in dots:
            numerator.add_(x.to(device), alpha=alpha)
        de_nom = torch.zeros(1, dtype=dtype, device=device)
        for x in l1s:
            de_nom.add_(x.to(device))
        d_hat = self.hp(group, "d_coef") * numerator / de_nom
        return tuple(torch.cat([numerator, de_nom, d_hat]).tolist())

    def begin(self, group) -> dict[str, Any]:
        """Start a step of the group: advance its step count (creating the
        group-level quantities on the first step) and return the scalars of
        this step: ``beta1``, ``beta2``, ``beta3``, ``d``, ``d_lr`` (η),
        ``s_scale``, ``alpha`` (the weight of ⟨g, x₀ − x⟩ in r) and
        ``coupled`` (the weight-decay factor added to the gradient, 0 unless
        weight_decouple=False). Shared with the fused kernel (fused/cpu_kernels.py)."""

        def hp(role):
            return self.hp(group, role)

        beta1, beta2 = hp("betas")
        beta3 = hp("beta3")
        if beta3 is None:
            beta3 = math.sqrt(beta2)
        d0, lr, wd = hp("d0"), hp("lr"), hp("weight_decay")
        if "d" not in group:
            group.update(d=float(d0), d_max=float(d0), d_hat=0.0, d_numerator=0.0, d_de_nom=0.0)
            group["prodigy_step"] = 0
        t = group["prodigy_step"] = group["prodigy_step"] + 1
        bias = 1.0
        if hp("bias_correction"):
            bias = (1.0 - math.pow(beta1, t)) / math.sqrt(1.0 - math.pow(beta2, t))
        d = group["d"]
        d_lr = d * lr / bias
        return {
            "beta1": beta1, "beta2": beta2, "beta3": beta3, "d": d, "d_lr": d_lr,
            "s_scale": (d / d0) * (d if hp("safeguard_warmup") else d_lr),
            "alpha": (d / d0) * d_lr,
            "coupled": wd if wd != 0 and not hp("weight_decouple") else 0.0,
        }  # fmt: skip

    def advance(self, group, params, dots, l1s, c) -> float | None:
        """The new estimate of ``d`` from the group sums of this step (stored in
        the group), or None when ``Σ‖s‖₁ = 0`` (nothing to estimate from: no step)."""
        numerator, de_nom, d_hat = self._estimate(group, params, dots, l1s, c["alpha"], c["beta3"])
        group["d_numerator"], group["d_de_nom"] = numerator, de_nom
        if de_nom == 0:
            return None
        d = c["d"]
        d_new = max(d, d_hat) if d == self.hp(group, "d0") else d
        d_max = max(group["d_max"], d_hat)
        d_new = min(d_max, d_new * self.hp(group, "growth_rate"))
        group.update(d=d_new, d_max=d_max, d_hat=d_hat)
        return d_new

    def keep(self, group, d_lr: float) -> float:
        """The factor of the decoupled weight decay, ``1 − λ·η`` (``1 − λ`` with fixed_decay)."""
        wd = self.hp(group, "weight_decay")
        if wd == 0 or not self.hp(group, "weight_decouple"):
            return 1.0
        return 1.0 - (wd if self.hp(group, "fixed_decay") else wd * d_lr)

    def update(self, updates, params, states, group, foreach):
        c = self.begin(group)
        beta1, beta2, beta3, d, d_lr, s_scale = (c[k] for k in ("beta1", "beta2", "beta3", "d", "d_lr", "s_scale"))
        if c["coupled"]:
            if foreach:
                updates = torch._foreach_add(updates, params, alpha=c["coupled"])
            else:
                updates = [u.add(p, alpha=c["coupled"]) for u, p in zip(updates, params)]

        # Pass 1: the moments, s, and the group sums ⟨g, x₀ − x⟩ and ‖s‖₁.
        ms = [st["exp_avg"] for st in states]
        vs = [st["exp_avg_sq"] for st in states]
        ss = [st["s"] for st in states]
        if foreach:
            diffs = torch._foreach_sub([st["p0"] for st in states], params)
            dots = [_dot(u, x, st) for u, x, st in zip(updates, diffs, states)]
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, updates, alpha=d * (1.0 - beta1))
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, updates, updates, value=d * d * (1.0 - beta2))
            torch._foreach_mul_(ss, beta3)
            torch._foreach_add_(ss, updates, alpha=s_scale)
            # Not torch._foreach_norm(ss, 1): its summation order differs from
            # the reference's s.abs().sum(), enough to move d (see _estimate).
            l1s = [_l1(s, st) for s, st in zip(ss, states)]
        else:
            dots, l1s = [], []
            for u, p, st, m, v, s in zip(updates, params, states, ms, vs, ss):
                dots.append(_dot(u, st["p0"] - p, st))
                m.mul_(beta1).add_(u, alpha=d * (1.0 - beta1))
                v.mul_(beta2).addcmul_(u, u, value=d * d * (1.0 - beta2))
                s.mul_(beta3).add_(u, alpha=s_scale)
                l1s.append(_l1(s, st))
        dots, l1s = group_sums(dots, l1s, states)
        d_new = self.advance(group, params, dots, l1s, c)
        if d_new is None:
            # Nothing to estimate from yet (the reference returns before moving).
            return [torch.zeros_like(p) for p in params]

        # Pass 2: the step, with the step size η = d_lr of the previous estimate.
        # The new parameters are computed with the reference's operations and
        # returned as u = x_new − x, which the chain's x + u reproduces exactly
        # wherever x_new and x are within a factor 2 (Sterbenz), i.e. for every
        # element but those whose step is as large as themselves. Computing u
        # directly as −η·m/den rounds differently from addcdiv (by an ulp on
        # the first step already), which the jumps of d amplify beyond 1e-5.
        eps = self.hp(group, "eps")
        keep = self.keep(group, d_lr)
        if foreach:
            out = torch._foreach_mul(params, keep)
            denoms = torch._foreach_sqrt(vs)
            if eps is None:
                # (there is no torch._foreach_atan2)
                angles = [torch.atan2(m, den) for m, den in zip(ms, denoms)]
                torch._foreach_add_(out, angles, alpha=-d_lr)
            else:
                torch._foreach_add_(denoms, d_new * eps)
                torch._foreach_addcdiv_(out, ms, denoms, value=-d_lr)
            torch._foreach_sub_(out, params)
            return out
        out = []
        for p, m, v in zip(params, ms, vs):
            new = p.mul(keep)
            den = v.sqrt()
            if eps is None:
                new.add_(torch.atan2(m, den), alpha=-d_lr)
            else:
                new.addcdiv_(m, den.add_(d_new * eps), value=-d_lr)
            out.append(new.sub_(p))
        return out


prodigy_step = ProdigyStep
