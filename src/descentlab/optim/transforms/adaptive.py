"""The adaptive family: per-coordinate step sizes from running gradient statistics.

Adagrad, RMSprop, Adadelta, Adamax, NAdam and RAdam, each in the form that its
torch.optim namesake implements (the single-tensor path of
``torch/optim/<name>.py`` is the arithmetic followed here). Each transform
returns a *direction*; the chain's ``scale_by_lr`` turns it into the step
``−lr·direction``. Coupled L2 (torch's ``weight_decay``) is ``add_l2`` placed
before these transforms; NAdam's and RAdam's ``decoupled_weight_decay=True`` is
served by the two gated transforms at the end of this module.

State keys are torch's (``sum``, ``square_avg``, ``grad_avg``, ``acc_delta``,
``exp_avg``, ``exp_inf``, ``exp_avg_sq``, ``mu_product``), so the state can be
compared with (and loaded from) the reference's.
"""

from __future__ import annotations

import torch

from ..base import Hyper, Transform, betas_pair, boolean, nonnegative, positive, unit_interval
from .regularize import AddL2

__all__ = [
    "ScaleByAdagrad",
    "ScaleByRms",
    "ScaleByAdadelta",
    "ScaleByAdamax",
    "ScaleByNadam",
    "ScaleByRadam",
    "AddL2IfCoupled",
    "AddDecayedWeightsIfDecoupled",
    "scale_by_adagrad",
    "scale_by_rms",
    "scale_by_adadelta",
    "scale_by_adamax",
    "scale_by_nadam",
    "scale_by_radam",
    "add_l2_if_coupled",
    "add_decayed_weights_if_decoupled",
]


def _zeros(p):
    return torch.zeros_like(p, memory_format=torch.preserve_format)


class ScaleByAdagrad(Transform):
    """Adagrad's direction (Duchi, Hazan & Singer, JMLR 2011).

    With ``κ = lr_decay``, ``s₀ = initial_accumulator_value`` and step ``t``::

        sₜ = sₜ₋₁ + g²
        u  = g / (√sₜ + ε) / (1 + (t − 1)·κ)

    so that after ``scale_by_lr`` the step is ``−lr/(1 + (t−1)·κ) · g/(√s + ε)``:
    torch.optim.Adagrad's form, with ε added *outside* the square root and the
    learning-rate decay ``lr/(1 + (t−1)·κ)`` folded in here (κ = 0: none).
    Reference: torch.optim.Adagrad. State: ``sum`` (filled with
    ``initial_accumulator_value`` when the state is created).
    """

    hypers = {
        "lr_decay": Hyper(0.0, nonnegative),
        "initial_accumulator_value": Hyper(0.0, nonnegative),
        "eps": Hyper(1e-10, positive),
    }
    state_keys = ("sum",)

    def init_state(self, p, state, group):
        state["sum"] = torch.full_like(
            p, self.hp(group, "initial_accumulator_value"), memory_format=torch.preserve_format
        )

    def _decay(self, group, t):
        return 1 + (t - 1) * self.hp(group, "lr_decay")

    def update_tensor(self, u, p, state, group):
        s = state["sum"]
        s.addcmul_(u, u, value=1)
        std = s.sqrt().add_(self.hp(group, "eps"))
        out = u.div(std)
        if self.hp(group, "lr_decay") != 0:
            out.div_(self._decay(group, state["step"]))
        return out

    def update_foreach(self, updates, params, states, group):
        sums = [s["sum"] for s in states]
        torch._foreach_addcmul_(sums, updates, updates, value=1)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, self.hp(group, "eps"))
        out = torch._foreach_div(updates, std)
        if self.hp(group, "lr_decay") != 0:
            torch._foreach_div_(out, [self._decay(group, s["step"]) for s in states])
        return out


class ScaleByRms(Transform):
    """RMSprop's direction (Hinton, Coursera lecture 6e, 2012), plain or centered.

    With ``α = alpha``::

        vₜ = α·vₜ₋₁ + (1 − α)·g²
        ḡₜ = α·ḡₜ₋₁ + (1 − α)·g                 (centered only)
        u  = g / (√vₜ + ε)                      (plain)
        u  = g / (√(vₜ − ḡₜ²) + ε)              (centered, Graves 2013)

    torch.optim.RMSprop's form: no bias correction, ε added outside the square
    root. Its ``momentum`` is applied *after* this division (``b ← μ·b + u``,
    ``b₀ = 0``), which is ``trace`` following this transform in the chain.
    Reference: torch.optim.RMSprop. State: ``square_avg`` (and ``grad_avg``).
    """

    hypers = {
        "alpha": Hyper(0.99, unit_interval),
        "eps": Hyper(1e-8, positive),
        "centered": Hyper(False, boolean),
    }
    state_keys = ("square_avg", "grad_avg")

    def init_state(self, p, state, group):
        state["square_avg"] = _zeros(p)
        if self.hp(group, "centered"):
            state["grad_avg"] = _zeros(p)

    @staticmethod
    def _grad_avg(state, like):
        # Created at init when centered; created here if `centered` was switched on later.
        if "grad_avg" not in state:
            state["grad_avg"] = _zeros(like)
        return state["grad_avg"]

    def update_tensor(self, u, p, state, group):
        alpha, eps = self.hp(group, "alpha"), self.hp(group, "eps")
        v = state["square_avg"]
        v.mul_(alpha).addcmul_(u, u, value=1 - alpha)
        if self.hp(group, "centered"):
            mean = self._grad_avg(state, p)
            mean.lerp_(u, 1 - alpha)
            avg = v.addcmul(mean, mean, value=-1).sqrt_()
        else:
            avg = v.sqrt()
        avg.add_(eps)
        return u.div(avg)

    def update_foreach(self, updates, params, states, group):
        alpha, eps = self.hp(group, "alpha"), self.hp(group, "eps")
        vs = [s["square_avg"] for s in states]
        torch._foreach_mul_(vs, alpha)
        torch._foreach_addcmul_(vs, updates, updates, value=1 - alpha)
        if self.hp(group, "centered"):
            means = [self._grad_avg(s, p) for s, p in zip(states, params)]
            torch._foreach_lerp_(means, updates, 1 - alpha)
            avg = torch._foreach_addcmul(vs, means, means, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(vs)
        torch._foreach_add_(avg, eps)
        return torch._foreach_div(updates, avg)


class ScaleByAdadelta(Transform):
    """Adadelta's direction (Zeiler, "ADADELTA: An Adaptive Learning Rate
    Method", 2012, Algorithm 1).

    With ``ρ = rho``::

        vₜ = ρ·vₜ₋₁ + (1 − ρ)·g²
        u  = √(aₜ₋₁ + ε) / √(vₜ + ε) · g
        aₜ = ρ·aₜ₋₁ + (1 − ρ)·u²

    ε is inside both square roots, as in the paper and torch. The paper has no
    learning rate (lr = 1, torch's default); torch multiplies ``u`` by ``lr``,
    which ``scale_by_lr`` does. Reference: torch.optim.Adadelta.
    State: ``square_avg`` (v), ``acc_delta`` (a).
    """

    hypers = {"rho": Hyper(0.9, unit_interval), "eps": Hyper(1e-6, positive)}
    state_keys = ("square_avg", "acc_delta")

    def init_state(self, p, state, group):
        state["square_avg"] = _zeros(p)
        state["acc_delta"] = _zeros(p)

    def update_tensor(self, u, p, state, group):
        rho, eps = self.hp(group, "rho"), self.hp(group, "eps")
        v, a = state["square_avg"], state["acc_delta"]
        v.mul_(rho).addcmul_(u, u, value=1 - rho)
        std = v.add(eps).sqrt_()
        delta = a.add(eps).sqrt_().div_(std).mul_(u)
        a.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        return delta

    def update_foreach(self, updates, params, states, group):
        rho, eps = self.hp(group, "rho"), self.hp(group, "eps")
        vs = [s["square_avg"] for s in states]
        accs = [s["acc_delta"] for s in states]
        torch._foreach_mul_(vs, rho)
        torch._foreach_addcmul_(vs, updates, updates, value=1 - rho)
        std = torch._foreach_add(vs, eps)
        torch._foreach_sqrt_(std)
        delta = torch._foreach_add(accs, eps)
        torch._foreach_sqrt_(delta)
        torch._foreach_div_(delta, std)
        torch._foreach_mul_(delta, updates)
        torch._foreach_mul_(accs, rho)
        torch._foreach_addcmul_(accs, delta, delta, value=1 - rho)
        return delta


class ScaleByAdamax(Transform):
    """Adamax's direction: Adam with the infinity norm (Kingma & Ba, ICLR 2015, §7.1).

    With ``(β₁, β₂) = betas``::

        mₜ = β₁·mₜ₋₁ + (1 − β₁)·g
        uₜ = max(β₂·uₜ₋₁, |g| + ε)
        u  = mₜ / uₜ / (1 − β₁ᵗ)

    torch.optim.Adamax's form: ε is added to ``|g|`` inside the max (the paper
    has no ε), so the divisor is never 0. Reference: torch.optim.Adamax.
    State: ``exp_avg`` (m), ``exp_inf`` (u).
    """

    hypers = {"betas": Hyper((0.9, 0.999), betas_pair), "eps": Hyper(1e-8, positive)}
    state_keys = ("exp_avg", "exp_inf")

    def init_state(self, p, state, group):
        state["exp_avg"] = _zeros(p)
        state["exp_inf"] = _zeros(p)

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        m, n = state["exp_avg"], state["exp_inf"]
        m.lerp_(u, 1 - b1)
        torch.maximum(n.mul_(b2), u.abs().add_(self.hp(group, "eps")), out=n)
        return m.div(n).div_(1 - b1 ** state["step"])

    def update_foreach(self, updates, params, states, group):
        b1, b2 = self.hp(group, "betas")
        ms = [s["exp_avg"] for s in states]
        ns = [s["exp_inf"] for s in states]
        torch._foreach_lerp_(ms, updates, 1 - b1)
        torch._foreach_mul_(ns, b2)
        norm = torch._foreach_abs(updates)
        torch._foreach_add_(norm, self.hp(group, "eps"))
        torch._foreach_maximum_(ns, norm)
        out = torch._foreach_div(ms, ns)
        torch._foreach_div_(out, [1 - b1 ** s["step"] for s in states])
        return out


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives its scalar state (``step``, NAdam's ``mu_product``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class ScaleByNadam(Transform):
    """NAdam's direction (Dozat, "Incorporating Nesterov Momentum into Adam",
    ICLR 2016 workshop), with its momentum schedule.

    With ``(β₁, β₂) = betas`` and ``ψ = momentum_decay``::

        μₜ   = β₁·(1 − ½·0.96^(t·ψ))            (momentum schedule)
        Πₜ   = Π_{i≤t} μᵢ                       (state mu_product)
        mₜ   = β₁·mₜ₋₁ + (1 − β₁)·g
        vₜ   = β₂·vₜ₋₁ + (1 − β₂)·g²
        d    = √(vₜ / (1 − β₂ᵗ)) + ε
        u    = (1 − μₜ)/(1 − Πₜ) · g/d + μₜ₊₁/(1 − Πₜ·μₜ₊₁) · mₜ/d

    This is torch.optim.NAdam's form (ε outside the root, after bias
    correction; the moment ``m`` is debiased with the schedule product, not
    with ``1 − β₁ᵗ`` as in Keras' simplified Nadam). As in torch, ``mu_product``
    is a 0-d tensor of torch's scalar dtype (float32 unless the default dtype
    is float64), so that its rounding, and hence every step, matches the
    reference; it is kept on the CPU as torch does when not capturable.
    Reference: torch.optim.NAdam. State: ``exp_avg``, ``exp_avg_sq``, ``mu_product``.
    """

    hypers = {
        "betas": Hyper((0.9, 0.999), betas_pair),
        "eps": Hyper(1e-8, positive),
        "momentum_decay": Hyper(4e-3, nonnegative),
    }
    state_keys = ("exp_avg", "exp_avg_sq", "mu_product")

    def init_state(self, p, state, group):
        state["mu_product"] = torch.tensor(1.0, dtype=_scalar_dtype())
        state["exp_avg"] = _zeros(p)
        state["exp_avg_sq"] = _zeros(p)

    def _coefficients(self, state, group):
        """Advance ``mu_product``; return (coefficient of g/d, of m/d, 1 − β₂ᵗ)."""
        b1, b2 = self.hp(group, "betas")
        psi, t = self.hp(group, "momentum_decay"), state["step"]
        mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        prod = state["mu_product"]
        if prod.dtype != _scalar_dtype() or prod.device.type != "cpu":
            # load_state_dict casts non-step state to the param's dtype and device;
            # the value is exact in the scalar dtype, so going back loses nothing
            # and a resumed run stays bit-identical to an uninterrupted one.
            prod = state["mu_product"] = prod.to(device="cpu", dtype=_scalar_dtype())
        prod.mul_(mu)
        prod_now = prod.item()
        prod_next = prod_now * mu_next
        return (1.0 - mu) / (1.0 - prod_now), mu_next / (1.0 - prod_next), 1 - b2**t

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        c_grad, c_avg, bc2 = self._coefficients(state, group)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(u, 1 - b1)
        v.mul_(b2).addcmul_(u, u, value=1 - b2)
        denom = v.div(bc2).sqrt_().add_(self.hp(group, "eps"))
        return u.div(denom).mul_(c_grad).add_(m.div(denom), alpha=c_avg)

    def update_foreach(self, updates, params, states, group):
        b1, b2 = self.hp(group, "betas")
        coefs = [self._coefficients(s, group) for s in states]
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(ms, updates, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, updates, updates, value=1 - b2)
        denom = torch._foreach_div(vs, [c[2] for c in coefs])
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, self.hp(group, "eps"))
        out = torch._foreach_div(updates, denom)
        torch._foreach_mul_(out, [c[0] for c in coefs])
        avg = torch._foreach_div(ms, denom)
        torch._foreach_mul_(avg, [c[1] for c in coefs])
        torch._foreach_add_(out, avg)
        return out


class ScaleByRadam(Transform):
    """RAdam's rectified direction (Liu et al., "On the Variance of the
    Adaptive Learning Rate and Beyond", ICLR 2020).

    With ``(β₁, β₂) = betas``, ``ρ∞ = 2/(1 − β₂) − 1`` and
    ``ρₜ = ρ∞ − 2t·β₂ᵗ/(1 − β₂ᵗ)``::

        mₜ = β₁·mₜ₋₁ + (1 − β₁)·g,   m̂ = mₜ / (1 − β₁ᵗ)
        vₜ = β₂·vₜ₋₁ + (1 − β₂)·g²
        rₜ = √((ρₜ − 4)(ρₜ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₜ))
        u  = m̂ · rₜ · √(1 − β₂ᵗ) / (√vₜ + ε)     if ρₜ > 5
        u  = m̂                                    otherwise (un-rectified:
                                                   SGD with momentum)

    torch.optim.RAdam's form: the threshold is ρₜ > 5 (the paper's Algorithm 2
    has ρₜ > 4, the authors' code ρₜ ≥ 5), and ε is added after the bias
    correction of √v. Reference: torch.optim.RAdam. State: ``exp_avg``, ``exp_avg_sq``.
    """

    hypers = {"betas": Hyper((0.9, 0.999), betas_pair), "eps": Hyper(1e-8, positive)}
    state_keys = ("exp_avg", "exp_avg_sq")

    def init_state(self, p, state, group):
        state["exp_avg"] = _zeros(p)
        state["exp_avg_sq"] = _zeros(p)

    def _factors(self, group, t):
        """(1 − β₁ᵗ, √(1 − β₂ᵗ)·rₜ or None when un-rectified)."""
        b1, b2 = self.hp(group, "betas")
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2**t) / bc2
        if not rho_t > 5.0:
            return bc1, None
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        return bc1, (bc2**0.5) * rect

    def update_tensor(self, u, p, state, group):
        b1, b2 = self.hp(group, "betas")
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(u, 1 - b1)
        v.mul_(b2).addcmul_(u, u, value=1 - b2)
        bc1, scale = self._factors(group, state["step"])
        out = m.div(bc1)
        if scale is not None:
            out.div_(v.sqrt().add_(self.hp(group, "eps"))).mul_(scale)
        return out

    def update_foreach(self, updates, params, states, group):
        b1, b2 = self.hp(group, "betas")
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(ms, updates, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, updates, updates, value=1 - b2)
        factors = [self._factors(group, s["step"]) for s in states]
        out = torch._foreach_div(ms, [f[0] for f in factors])
        rect = [i for i, f in enumerate(factors) if f[1] is not None]
        if rect:
            sub = [out[i] for i in rect]
            denom = torch._foreach_sqrt([vs[i] for i in rect])
            torch._foreach_add_(denom, self.hp(group, "eps"))
            torch._foreach_div_(sub, denom)
            torch._foreach_mul_(sub, [factors[i][1] for i in rect])
        return out


class AddL2IfCoupled(AddL2):
    """``u ← u + λ·p`` unless ``decoupled_weight_decay``: the coupled half of
    torch's NAdam/RAdam ``weight_decay``.

    Placed before the adaptive scaling. With ``decoupled_weight_decay=True`` it
    does nothing and :class:`AddDecayedWeightsIfDecoupled` applies the decay.
    """

    hypers = {**AddL2.hypers, "decoupled_weight_decay": Hyper(False, boolean)}

    def update_tensor(self, u, p, state, group):
        if self.hp(group, "decoupled_weight_decay"):
            return u
        return super().update_tensor(u, p, state, group)

    def update_foreach(self, updates, params, states, group):
        if self.hp(group, "decoupled_weight_decay"):
            return updates
        return super().update_foreach(updates, params, states, group)


class AddDecayedWeightsIfDecoupled(AddL2):
    """``u ← u + λ·p`` only if ``decoupled_weight_decay``: the decoupled half of
    torch's NAdam/RAdam ``weight_decay`` (Loshchilov & Hutter, ICLR 2019).

    Placed after the adaptive scaling and before ``scale_by_lr``, so the step is
    ``p ← p − lr·(u + λ·p) = (1 − lr·λ)·p − lr·u``, torch's
    ``p.mul_(1 − lr·λ)`` followed by the adaptive step.
    """

    hypers = {**AddL2.hypers, "decoupled_weight_decay": Hyper(False, boolean)}

    def update_tensor(self, u, p, state, group):
        if not self.hp(group, "decoupled_weight_decay"):
            return u
        return super().update_tensor(u, p, state, group)

    def update_foreach(self, updates, params, states, group):
        if not self.hp(group, "decoupled_weight_decay"):
            return updates
        return super().update_foreach(updates, params, states, group)


scale_by_adagrad = ScaleByAdagrad
scale_by_rms = ScaleByRms
scale_by_adadelta = ScaleByAdadelta
scale_by_adamax = ScaleByAdamax
scale_by_nadam = ScaleByNadam
scale_by_radam = ScaleByRadam
add_l2_if_coupled = AddL2IfCoupled
add_decayed_weights_if_decoupled = AddDecayedWeightsIfDecoupled
