"""Steps that call the C++ kernels of ``csrc/`` (CPU only).

Each function takes the chain's arguments ``(params, grads, states, group)``,
computes the per-tensor scalars (bias corrections, NAdam's momentum schedule,
RAdam's rectification, schedule-free's averaging weight) with the very Python
code of the transforms, so those scalars are bit-identical to the chain's, and
hands them to the kernels, which do everything else in as few passes over
memory as the algorithm allows (one, or two where sums must come first).
State keys and formats are the chain's; tensors the chain creates lazily
(momentum buffers, RMSprop's ``grad_avg``) are created here the same way.

Every kernel also applies the universal regularization of ``optim.create``
(``l1``, ``l2`` before the chain, ``decoupled_decay`` after it), and those of
adam, amsgrad, adamw, lion, ademamix, adopt and mars the cautious mask
(``cautious=True``, ``transforms/cautious.py``) in a second pass: see
:func:`_cautiously`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import sharded
from ..transforms.ademamix import ScaleByAdemamix
from ..transforms.adaptive import ScaleByNadam, ScaleByRadam, ScaleByRms
from ..transforms.adopt import ScaleByAdopt
from ..transforms.factored import ScaleByRelativeStep, _rms_divisor
from ..transforms.orthogonal import ScaleByAdjustedLr, newton_schulz_bf16_
from ..transforms.prodigy import ProdigyStep, group_sums
from ..transforms.schedulefree import ScheduleFreeAdamWStep
from .build import ops

# Stateless helpers whose scalar arithmetic the kernels reuse (default keys).
_NADAM = ScaleByNadam()
_RADAM = ScaleByRadam()
_SCHEDULE_FREE = ScheduleFreeAdamWStep()
_PRODIGY = ProdigyStep()
_RELATIVE_STEP = ScaleByRelativeStep()
_ADJUSTED_LR = ScaleByAdjustedLr()
_ADEMAMIX = ScaleByAdemamix()
_ADOPT = ScaleByAdopt()


def _reg(group: dict[str, Any]) -> dict[str, float]:
    """The universal options: add_l1, add_l2(l2), decay_weights(decoupled_decay)."""
    return {
        "l1": float(group.get("l1", 0.0)),
        "l2": float(group.get("l2", 0.0)),
        "decay": -(float(group.get("decoupled_decay", 0.0)) * float(group["lr"])),
    }


def _cautiously(call, params, states, group) -> None:
    """Run a kernel ``call(cautious=..., count=...)`` as the group asks.

    Not cautious: one pass (``cautious=[]``). Cautious: a pass that computes the
    direction d and counts the coordinates where ``d ⊙ u > 0`` without writing
    anything, the counts summed over FSDP2 shards, each tensor's scale
    ``numel / (count + 1)`` computed by torch as the chain computes it, then the
    step, which multiplies d by ``1[d ⊙ u > 0] · scale``. The count is exact (a
    double per tensor), as the chain's float32 sum is below 2²⁴ elements.
    """
    if not group.get("cautious"):
        call(cautious=[], count=False)
        return
    counts = call(cautious=[], count=True)
    totals = sharded.all_reduce_sum([c.to(p.dtype) for c, p in zip(counts.unbind(0), params)], states)
    scales = [float(sharded.numel(p, s) / (c + 1)) for p, s, c in zip(params, states, totals)]
    call(cautious=scales, count=False)


def _adam_corrections(group, states) -> tuple[list[float], list[float]]:
    """scale_by_adam's ``1 − β₁ᵗ`` and ``√(1 − β₂ᵗ)`` per tensor."""
    b1, b2 = group["betas"]
    return [1 - b1 ** s["step"] for s in states], [math.sqrt(1 - b2 ** s["step"]) for s in states]


def _adam(params, grads, states, group, decoupled: bool) -> None:
    b1, b2 = group["betas"]
    amsgrad = bool(group["amsgrad"])
    args = (
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [], *_adam_corrections(group, states),
    )
    options = dict(lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
                   decoupled=decoupled, amsgrad=amsgrad, **_reg(group))
    _cautiously(lambda **c: ops().adam(*args, **options, **c), params, states, group)


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


def adamw_bf16(params, grads, states, group, seeds) -> None:
    """adamw on bfloat16 moments (``state_dtype="bfloat16"``) in one pass: equal bit for bit
    to widening them, :func:`adamw` and ``lowprec.narrow_`` with the C++ rounding, whose
    per-key seeds (``seeds[i][key]``) it is given."""
    b1, b2 = group["betas"]
    amsgrad = bool(group["amsgrad"])
    ops().adamw_bf16(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [], *_adam_corrections(group, states),
        [k["exp_avg"] for k in seeds], [k["exp_avg_sq"] for k in seeds],
        [k["max_exp_avg_sq"] for k in seeds] if amsgrad else [],
        lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
        amsgrad=amsgrad, **_reg(group),
    )


def _seeds(seeds: list[dict[str, int]] | None, **keys: str) -> dict[str, list[int]]:
    """The kernel's seed lists for bfloat16 state (``state_dtype="bfloat16"``): for each
    ``argument=state key``, each tensor's seed of that key, with which the kernel rounds
    it as ``lowprec.narrow_`` would (csrc/lowprec.h); none for float state."""
    return {} if seeds is None else {arg: [k[key] for k in seeds] for arg, key in keys.items()}


def lion(params, grads, states, group, seeds=None) -> None:
    """One pass (csrc/one_pass.cpp); on bfloat16 state too, given its rounding seeds."""
    b1, b2 = group["betas"]
    args = (params, grads, [s["exp_avg"] for s in states])
    options = dict(lr=float(group["lr"]), beta1=b1, beta2=b2, weight_decay=group["weight_decay"], **_reg(group),
                   **_seeds(seeds, seeds_m="exp_avg"))
    _cautiously(lambda **c: ops().lion(*args, **options, **c), params, states, group)


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


def prodigy(params, grads, states, group) -> None:
    """Two passes: s and the group sums, then (with the new d) the moments and the step.

    The sums are accumulated per tensor in double and rounded to the dtype of
    the chain's per-tensor sums; the group's estimate of d is then computed by
    the chain's own code (``ProdigyStep.advance``), in the chain's order.
    """
    c = _PRODIGY.begin(group)
    reg = _reg(group)
    sums = ops().prodigy_sums(
        params, grads, [s["p0"] for s in states], [s["s"] for s in states],
        beta3=c["beta3"], s_scale=c["s_scale"], weight_decay=c["coupled"], l1=reg["l1"], l2=reg["l2"],
    )
    dots, l1s = group_sums(list(sums[0].unbind(0)), list(sums[1].unbind(0)), states)  # in double
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    d_new = _PRODIGY.advance(group, params, [x.to(dtype) for x in dots], [x.to(dtype) for x in l1s], c)
    eps = group["eps"]
    d, d_lr, (beta1, beta2) = c["d"], c["d_lr"], (c["beta1"], c["beta2"])
    ops().prodigy_step(
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        beta1=beta1, m_scale=d * (1.0 - beta1), beta2=beta2, v_scale=d * d * (1.0 - beta2),
        move=d_new is not None, keep=_PRODIGY.keep(group, d_lr), neg_step=-d_lr,
        eps_d=0.0 if d_new is None or eps is None else d_new * eps, atan2=eps is None,
        weight_decay=c["coupled"], **reg,
    )


def adafactor(params, grads, states, group) -> None:
    """One op, tensor by tensor: the factored statistics with the norms of U and
    p, then the step (see csrc/adafactor.cpp).

    The kernel computes the clipping denominator and the parameter scale from
    the norms with the formulas of ``ClipByBlockRms`` and ``ScaleByParamBlockRms``
    (in double, as here); the relative step comes from ``ScaleByRelativeStep``.
    """
    tau, (eps1, eps2), d, lr = group["beta2_decay"], group["eps"], group["d"], float(group["lr"])
    factored = [int(p.dim() > 1) for p in params]
    ops().adafactor(
        params, grads,
        [s["row_var"] if f else s["variance"] for s, f in zip(states, factored)],
        [s["col_var"] if f else s["variance"] for s, f in zip(states, factored)],
        factored, [s["step"] ** tau for s in states],
        [torch.finfo(p.dtype).eps if eps1 is None else eps1 for p in params],
        [_rms_divisor(p) for p in params], [-_RELATIVE_STEP._rho(group, s) for s in states],
        clip_threshold=float(d), eps2=float(eps2), own_decay=-(lr * group["weight_decay"]), **_reg(group),
    )


def _muon_adamw(params, grads, states, group) -> None:
    """Muon's AdamW branch (``use_muon=False``): scale_by_adam on the ``adamw_*``
    betas/eps/amsgrad, scale_by_lr, decay_weights, as the muon chain."""
    adamw = {
        **group, "betas": group["adamw_betas"], "eps": group["adamw_eps"],
        "amsgrad": group.get("adamw_amsgrad", False),
    }
    reg = _reg(group)
    wd = float(group["weight_decay"])
    if reg["decay"] == 0:
        # decay_weights' u − lr·wd·p is the kernel's decoupled decay slot exactly.
        adamw["decoupled_decay"], adamw["weight_decay"] = wd, 0.0
        _adam(params, grads, states, adamw, decoupled=False)
    else:  # two decays: wd folds into the direction, −lr·(d + wd·p) (an ulp apart)
        _adam(params, grads, states, adamw, decoupled=True)


def muon(params, grads, states, group) -> None:
    """muon: one matrix at a time, a momentum pass that also writes the bfloat16
    copy Newton–Schulz starts from, torch's matmuls (the very code of the chain,
    so bitwise torch.optim.Muon's), and an update pass; the AdamW groups by the
    Adam kernel. One matrix's temporaries at a time, as torch's Muon."""
    if not group["use_muon"]:
        _muon_adamw(params, grads, states, group)
        return
    reg = _reg(group)
    kernels = ops()
    coefficients, steps, eps = group["ns_coefficients"], group["ns_steps"], group["eps"]
    own_decay = -(float(group["weight_decay"]) * float(group["lr"]))
    for p, g, state in zip(params, grads, states):
        (x,) = kernels.muon_momentum(
            [p], [g], [state["momentum_buffer"]],
            momentum=group["momentum"], nesterov=bool(group["nesterov"]), l1=reg["l1"], l2=reg["l2"],
        )
        # A shard of a matrix: the whole matrix is gathered (in bfloat16) and orthogonalized
        # on every process, which keeps its own rows (optim/sharded.py, docs/sharding.md).
        x = sharded.shard(newton_schulz_bf16_(sharded.full(x, state), coefficients, steps, eps), state)
        kernels.muon_update(
            [p], [x.contiguous()], [_ADJUSTED_LR._step(p, group, state)], own_decay=own_decay, decay=reg["decay"]
        )


def ademamix(params, grads, states, group, seeds=None) -> None:
    """One pass (csrc/modern.cpp); the schedules of α and β₃ from the transform's own code;
    on bfloat16 state too, given its rounding seeds."""
    b1, b2, _ = group["betas"]
    scalars = [_ADEMAMIX.scalars(group, s["step"]) for s in states]
    args = (
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [s["exp_avg_slow"] for s in states], *([c[j] for c in scalars] for j in range(4)),
    )
    options = dict(lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
                   decoupled=bool(group["weight_decouple"]), **_reg(group),
                   **_seeds(seeds, seeds_m="exp_avg", seeds_v="exp_avg_sq", seeds_slow="exp_avg_slow"))
    _cautiously(lambda **c: ops().ademamix(*args, **options, **c), params, states, group)


def adopt(params, grads, states, group, seeds=None) -> None:
    """One pass (csrc/modern.cpp), one call per distinct step (the clip value is t^e); on
    bfloat16 state too, given its rounding seeds."""
    b1, b2 = group["betas"]
    by_step: dict[int, list[int]] = {}
    for i, s in enumerate(states):
        by_step.setdefault(s["step"], []).append(i)
    for t, idx in by_step.items():
        clip = _ADOPT.clip(group, t)
        ps, ss = [params[i] for i in idx], [states[i] for i in idx]
        args = (ps, [grads[i] for i in idx], [s["exp_avg"] for s in ss], [s["exp_avg_sq"] for s in ss],
                [int(t == 1)] * len(idx))
        options = dict(clip=0.0 if clip is None else clip, clipped=clip is not None, lr=float(group["lr"]),
                       beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
                       decoupled=bool(group["weight_decouple"]), **_reg(group),
                       **_seeds(None if seeds is None else [seeds[i] for i in idx], seeds_m="exp_avg",
                                seeds_v="exp_avg_sq"))
        _cautiously(lambda a=args, o=options, **c: ops().adopt(*a, **o, **c), ps, ss, group)


def mars(params, grads, states, group, seeds=None) -> None:
    """Two passes (csrc/modern.cpp): the squared norms of the corrected gradients
    (all-reduced over FSDP2 shards, as the chain), then the step; on bfloat16 state
    too, given its rounding seeds."""
    b1, b2 = group["betas"]
    reg = _reg(group)
    use_mars = bool(group["use_mars"])
    factor = group["gamma"] * (b1 / (1.0 - b1))
    last = [s["last_grad"] for s in states]
    norms = [0.0] * len(params)
    if use_mars:
        sums = ops().mars_sums(params, grads, last, factor=factor, l1=reg["l1"], l2=reg["l2"],
                               **_seeds(seeds, seeds_last="last_grad"))
        totals = sharded.all_reduce_sum(list(sums.unbind(0)), states)
        norms = [float(x.sqrt()) for x in totals]
    ams = bool(group["ams_bound"])
    args = (
        params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if ams else [], last, norms,
        [1.0 - b1 ** s["step"] for s in states], [math.sqrt(1.0 - b2 ** s["step"]) for s in states],
    )
    options = dict(lr=float(group["lr"]), beta1=b1, beta2=b2, factor=factor, eps=group["eps"],
                   weight_decay=group["weight_decay"], use_mars=use_mars,
                   lion=use_mars and group["mars_type"] == "lion", ams_bound=ams, **reg,
                   **_seeds(seeds, seeds_m="exp_avg", seeds_v="exp_avg_sq", seeds_last="last_grad",
                            **({"seeds_vmax": "max_exp_avg_sq"} if ams else {})))
    _cautiously(lambda **c: ops().mars(*args, **options, **c), params, states, group)
