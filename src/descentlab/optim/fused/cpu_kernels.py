"""Steps that call the one-pass C++ kernels of ``kernels.cpp`` (CPU only).

Each function takes the chain's arguments ``(params, grads, states, group)``,
computes the per-tensor scalars (bias corrections, NAdam's momentum schedule,
RAdam's rectification, schedule-free's averaging weight) with the very Python
code of the transforms, so those scalars are bit-identical to the chain's, and
hands them to one kernel call that does everything else in one pass over
memory. State keys and formats are the chain's; tensors the chain creates
lazily (momentum buffers, RMSprop's ``grad_avg``) are created here the same way.

Every kernel also applies the universal regularization of ``optim.create``
(``l1``, ``l2`` before the chain, ``decoupled_decay`` after it).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..transforms.adaptive import ScaleByNadam, ScaleByRadam, ScaleByRms
from ..transforms.schedulefree import ScheduleFreeAdamWStep
from .build import ops

# Stateless helpers whose scalar arithmetic the kernels reuse (default keys).
_NADAM = ScaleByNadam()
_RADAM = ScaleByRadam()
_SCHEDULE_FREE = ScheduleFreeAdamWStep()


def _reg(group: dict[str, Any]) -> dict[str, float]:
    """The universal options: add_l1, add_l2(l2), decay_weights(decoupled_decay)."""
    return {
        "l1": float(group.get("l1", 0.0)),
        "l2": float(group.get("l2", 0.0)),
        "decay": -(float(group.get("decoupled_decay", 0.0)) * float(group["lr"])),
    }


def _adam_corrections(group, states) -> tuple[list[float], list[float]]:
    """scale_by_adam's ``1 − β₁ᵗ`` and ``√(1 − β₂ᵗ)`` per tensor."""
    b1, b2 = group["betas"]
    return [1 - b1 ** s["step"] for s in states], [math.sqrt(1 - b2 ** s["step"]) for s in states]


def _adam(params, grads, states, group, decoupled: bool) -> None:
    b1, b2 = group["betas"]
    amsgrad = bool(group["amsgrad"])
    ops().adam(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [], *_adam_corrections(group, states),
        lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
        weight_decay=group["weight_decay"], decoupled=decoupled, amsgrad=amsgrad, **_reg(group),
    )


def adam(params, grads, states, group) -> None:
    """adam and amsgrad (coupled weight decay)."""
    _adam(params, grads, states, group, decoupled=False)


def adamw(params, grads, states, group) -> None:
    """adamw: ``p ← p − lr·(adam direction + wd·p)``, as the chain rounds it.

    Not torch's ``_fused_adamw_``: that multiplies ``p`` by ``1 − lr·wd``,
    whose float32 rounding (up to 3e-8, i.e. 0.3% of ``lr·wd = 1e-5``) drifts
    from the chain by ~5e-6 relative over 100 steps.
    """
    _adam(params, grads, states, group, decoupled=True)


def lion(params, grads, states, group) -> None:
    b1, b2 = group["betas"]
    ops().lion(
        params, grads, [s["exp_avg"] for s in states],
        lr=float(group["lr"]), beta1=b1, beta2=b2, weight_decay=group["weight_decay"], **_reg(group),
    )


def rmsprop(params, grads, states, group) -> None:
    centered, mu = bool(group["centered"]), group["momentum"]
    grad_avgs = [ScaleByRms._grad_avg(s, p) for s, p in zip(states, params)] if centered else []
    fresh = [0] * len(params)
    if mu != 0:
        for i, (p, s) in enumerate(zip(params, states)):
            if s.get("momentum_buffer") is None:
                s["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
                fresh[i] = 1
    ops().rmsprop(
        params, grads, [s["square_avg"] for s in states], grad_avgs,
        [s["momentum_buffer"] for s in states] if mu != 0 else [], fresh,
        lr=float(group["lr"]), alpha=group["alpha"], eps=group["eps"],
        weight_decay=group["weight_decay"], momentum=mu, dampening=group["dampening"],
        nesterov=bool(group["nesterov"]), centered=centered, **_reg(group),
    )


def adadelta(params, grads, states, group) -> None:
    ops().adadelta(
        params, grads, [s["square_avg"] for s in states], [s["acc_delta"] for s in states],
        lr=float(group["lr"]), rho=group["rho"], eps=group["eps"],
        weight_decay=group["weight_decay"], **_reg(group),
    )


def adamax(params, grads, states, group) -> None:
    b1, b2 = group["betas"]
    ops().adamax(
        params, grads, [s["exp_avg"] for s in states], [s["exp_inf"] for s in states],
        [1 - b1 ** s["step"] for s in states],
        lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
        weight_decay=group["weight_decay"], **_reg(group),
    )


def nadam(params, grads, states, group) -> None:
    b1, b2 = group["betas"]
    coefs = [_NADAM._coefficients(s, group) for s in states]  # advances mu_product, as the chain
    ops().nadam(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [c[0] for c in coefs], [c[1] for c in coefs], [c[2] for c in coefs],
        lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
        weight_decay=group["weight_decay"], decoupled=bool(group["decoupled_weight_decay"]),
        **_reg(group),
    )


def radam(params, grads, states, group) -> None:
    b1, b2 = group["betas"]
    factors = [_RADAM._factors(group, s["step"]) for s in states]
    ops().radam(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [f[0] for f in factors], [1.0 if f[1] is None else f[1] for f in factors],
        [int(f[1] is not None) for f in factors],
        lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
        weight_decay=group["weight_decay"], decoupled=bool(group["decoupled_weight_decay"]),
        **_reg(group),
    )


def adamw_schedulefree(params, grads, states, group) -> None:
    bias_correction2, lr, ckp1 = _SCHEDULE_FREE._schedule(group)  # advances the group's clock
    beta1, beta2 = group["betas"]
    ops().adamw_schedulefree(
        params, grads, [s["z"] for s in states], [s["exp_avg_sq"] for s in states],
        lr=lr, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
        bias_correction2=bias_correction2, ckp1=ckp1, y_coef=lr * (beta1 * (1 - ckp1) - 1),
        **_reg(group),
    )


def lamb(params, grads, states, group) -> None:
    b1, b2 = group["betas"]
    amsgrad = bool(group["amsgrad"])
    ops().lamb(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [], *_adam_corrections(group, states),
        lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"],
        weight_decay=group["weight_decay"], trust_coefficient=group["trust_coefficient"],
        amsgrad=amsgrad, **_reg(group),
    )


def lars(params, grads, states, group) -> None:
    mu = group["momentum"]
    if mu != 0:  # trace_from_zero: a zero buffer, created when missing
        for p, s in zip(params, states):
            if s.get("momentum_buffer") is None:
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    ops().lars(
        params, grads, [s["momentum_buffer"] for s in states] if mu != 0 else [],
        [int(p.ndim > 1) for p in params],
        lr=float(group["lr"]), weight_decay=group["weight_decay"], momentum=mu,
        dampening=group["dampening"], trust_coefficient=group["trust_coefficient"],
        nesterov=bool(group["nesterov"]), **_reg(group),
    )
