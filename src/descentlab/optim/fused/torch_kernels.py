"""Steps that call torch's own fused kernels, for the optimizers torch has them for.

``torch._fused_adam_``, ``_fused_adamw_``, ``_fused_sgd_`` and
``_fused_adagrad_`` implement exactly the algorithms of our adam/amsgrad,
adamw, sgd/momentum/nesterov and adagrad chains (those chains are proven equal
to torch.optim's for-loops, and torch proves its fused kernels equal to the
same for-loops), on CPU and CUDA. They do not take our universal ``l1``,
``l2`` or ``decoupled_decay``; the dispatcher declines when any is non-zero.

State stays in the chain's format: ``state["step"]`` is a Python int (already
incremented by the chain), handed to the kernel as a float32 0-d tensor as
torch.optim does with ``fused=True`` (one tensor per distinct step value: the
kernels read it and do not write it). Momentum buffers and moments are the
chain's tensors, under the chain's keys. The chain has already negated the
gradients for ``maximize``, so every call passes ``maximize=False``. A
universal ``l2`` arrives only when the optimizer's own (coupled) weight_decay
is 0 (see ``FusedKernel.l2_is_weight_decay``) and is passed as weight_decay.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor


def _by_dtype(params: list[Tensor]) -> list[list[int]]:
    """Indices of ``params`` grouped by dtype: one kernel call each (the
    dispatcher has checked that they share one device)."""
    buckets: dict[torch.dtype, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        buckets[p.dtype].append(i)
    return list(buckets.values())


def _step_tensors(states: list[dict], device: torch.device) -> list[Tensor]:
    made: dict[int, Tensor] = {}
    out = []
    for s in states:
        t = s["step"]
        if t not in made:
            made[t] = torch.tensor(float(t), dtype=torch.float32, device=device)
        out.append(made[t])
    return out


def _pick(items: list, idx: list[int]) -> list:
    return [items[i] for i in idx]


def _coupled_decay(group) -> float:
    """The coupled L2 coefficient: weight_decay, or the universal l2 when that is 0."""
    return group["weight_decay"] or group.get("l2", 0.0)


def _adam(params, grads, states, group, kernel, weight_decay) -> None:
    b1, b2 = group["betas"]
    amsgrad = bool(group["amsgrad"])
    for idx in _by_dtype(params):
        st = _pick(states, idx)
        kernel(
            _pick(params, idx),
            _pick(grads, idx),
            [s["exp_avg"] for s in st],
            [s["exp_avg_sq"] for s in st],
            [s["max_exp_avg_sq"] for s in st] if amsgrad else [],
            _step_tensors(st, params[idx[0]].device),
            lr=float(group["lr"]),
            beta1=b1,
            beta2=b2,
            weight_decay=weight_decay,
            eps=group["eps"],
            amsgrad=amsgrad,
            maximize=False,
        )


def adam(params, grads, states, group) -> None:
    """adam and amsgrad: coupled L2 weight decay (``torch._fused_adam_``)."""
    _adam(params, grads, states, group, torch._fused_adam_, _coupled_decay(group))


def adamw(params, grads, states, group) -> None:
    """adamw: decoupled weight decay (``torch._fused_adamw_``)."""
    _adam(params, grads, states, group, torch._fused_adamw_, group["weight_decay"])


def sgd(params, grads, states, group) -> None:
    """sgd, momentum and nesterov (``torch._fused_sgd_``).

    As ``trace``, a missing momentum buffer is set to the (decayed) gradient:
    the kernel's ``is_first_step``; parameters with and without a buffer are
    two calls.
    """
    mu = group["momentum"]
    options = dict(
        weight_decay=_coupled_decay(group),
        momentum=mu,
        lr=float(group["lr"]),
        dampening=group["dampening"],
        nesterov=bool(group["nesterov"]),
        maximize=False,
    )
    for idx in _by_dtype(params):
        if mu == 0:
            torch._fused_sgd_(_pick(params, idx), _pick(grads, idx), [], is_first_step=False, **options)
            continue
        fresh = [i for i in idx if states[i].get("momentum_buffer") is None]
        old = [i for i in idx if states[i].get("momentum_buffer") is not None]
        for i in fresh:
            states[i]["momentum_buffer"] = torch.empty_like(params[i], memory_format=torch.preserve_format)
        for part, first in ((old, False), (fresh, True)):
            if part:
                torch._fused_sgd_(
                    _pick(params, part),
                    _pick(grads, part),
                    [states[i]["momentum_buffer"] for i in part],
                    is_first_step=first,
                    **options,
                )


def adagrad(params, grads, states, group) -> None:
    """adagrad, with lr_decay and coupled weight decay (``torch._fused_adagrad_``)."""
    for idx in _by_dtype(params):
        st = _pick(states, idx)
        torch._fused_adagrad_(
            _pick(params, idx),
            _pick(grads, idx),
            [s["sum"] for s in st],
            _step_tensors(st, params[idx[0]].device),
            lr=float(group["lr"]),
            lr_decay=group["lr_decay"],
            weight_decay=_coupled_decay(group),
            eps=group["eps"],
            maximize=False,
        )
