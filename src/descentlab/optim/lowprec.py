"""Optimizer state in bfloat16, rounded stochastically (the ``state_dtype`` option).

``optim.create(name, params, state_dtype="bfloat16")`` keeps every state
tensor of the parameter's shape (moments, momentum buffers, last gradients:
the elementwise state) in bfloat16, half the bytes of float32. Each step
works on float32 copies, exactly as without the option (fused kernels
included), and writes the new state back with *stochastic rounding* (the CPU
kernels of adamw, lion, ademamix, adopt and mars do the three in one pass, without the
copies, bit for bit the same: ``fused.low_precision_step``): a
value between two bfloat16 neighbours becomes the upper one with probability
equal to its distance from the lower one, so the rounding is unbiased and
an EMA with β close to 1 still moves (round-to-nearest would drop updates
smaller than half a bfloat16 ulp, 2⁻⁹ relative: Zamirai et al. 2020,
"Revisiting BFloat16 Training"; Gupta et al. 2015, "Deep Learning with Limited
Numerical Precision"). State of other shapes (Adafactor's factored
statistics, preconditioner matrices) stays in the parameter's dtype.

The random bits are a function of the step, the parameter's position in the
optimizer and the state's key, so a run is reproducible and resumes exactly
(nothing to save). On CPU, with the C++ kernels loaded and the group's
``fused`` not False, they come from a counter-based hash in C++
(``fused/csrc/lowprec.cpp``: one pass, ~20x faster than drawing them with
torch.randint); otherwise from a torch.Generator seeded with the same numbers.
The two draw different bits: a run resumed where the kernels are not
available continues unbiased but not bit for bit. FSDP2 shards draw their own
bits: a sharded run is as unbiased as one process but not equal to it bit for
bit.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

#: the values of the ``state_dtype`` option
CHOICES = (None, "bfloat16")
_HIGH_MASK = -65536  # 0xFFFF0000 as int32: the bits bfloat16 keeps


def check(value: Any) -> str | None:
    return None if value in CHOICES else "None or 'bfloat16'"


def stochastic_round_(dst: Tensor, src: Tensor, generator: torch.Generator) -> Tensor:
    """Write ``src`` (float32/float64) into the bfloat16 ``dst``, rounded stochastically.

    Adding 16 uniform random bits below the bfloat16 mantissa and truncating
    rounds up with probability (x − lower)/(upper − lower). Non-finite values
    are rounded to nearest.
    """
    x = src.float() if src.dtype != torch.float32 else src
    noise = torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, generator=generator, device=x.device)
    bits = x.view(torch.int32).add(noise).bitwise_and_(_HIGH_MASK)
    rounded = bits.view(torch.float32)
    rounded = torch.where(torch.isfinite(x), rounded, x)
    return dst.copy_(rounded)


def elementwise(value: Any, p: Tensor) -> bool:
    """Whether ``value`` is a state tensor of ``p``'s shape (elementwise state)."""
    return isinstance(value, Tensor) and value.is_floating_point() and value.shape == p.shape and value.ndim > 0


def compress_(p: Tensor, state: dict) -> None:
    """Cast ``p``'s elementwise state to bfloat16 (values that came from bfloat16: exactly)."""
    for key, value in state.items():
        if elementwise(value, p) and value.dtype != torch.bfloat16:
            state[key] = value.to(torch.bfloat16)


def widen(params: list[Tensor], states: list[dict]) -> list[dict]:
    """Working copies of the states, their bfloat16 tensors as the parameter's dtype."""
    out = []
    for p, state in zip(params, states):
        work = copy.copy(state)  # keeps a LocalState's sharding
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dtype == torch.bfloat16 and value.shape == p.shape:
                work[key] = value.to(p.dtype)
        out.append(work)
    return out


def _kernel():
    """The C++ rounding op, or None where the kernels are not available."""
    from .fused import build

    try:
        return build.ops().stochastic_round_bf16
    except build.FusedUnavailable:
        return None


def key_seeds(params: list[Tensor], works: list[dict], positions: list[int]) -> list[dict[str, int]]:
    """The seed :func:`narrow_` gives the C++ rounding of each elementwise key of each state
    (a direct bfloat16 kernel draws the same bits with them)."""
    out = []
    for p, work, pos in zip(params, works, positions):
        seed = (int(work["step"]) * 1_000_003 + pos) % (1 << 62)
        out.append({key: (seed * 64 + index) % (1 << 62) for index, key in enumerate(work)
                    if elementwise(work[key], p)})
    return out


def narrow_(params: list[Tensor], states: list[dict], works: list[dict], positions: list[int],
            kernel: bool = False) -> None:
    """Write the working copies back: elementwise tensors stochastically rounded to
    bfloat16, everything else as it is. ``kernel``: round with the C++ op where it
    applies (CPU float32 contiguous tensors, the kernels loaded)."""
    op = _kernel() if kernel else None
    for p, state, work, pos, seeds in zip(params, states, works, positions, key_seeds(params, works, positions)):
        seed = (int(work["step"]) * 1_000_003 + pos) % (1 << 62)
        gen = None
        for key, value in work.items():
            old = state.get(key)
            if elementwise(value, p) and value.dtype != torch.bfloat16:
                if not (isinstance(old, Tensor) and old.dtype == torch.bfloat16 and old.shape == value.shape):
                    old = state[key] = torch.empty_like(value, dtype=torch.bfloat16)
                if (op is not None and value.dtype == torch.float32 and value.device.type == "cpu"
                        and value.is_contiguous() and old.is_contiguous()):
                    op(old, value, seeds[key])
                else:
                    if gen is None:
                        gen = torch.Generator(device=p.device).manual_seed(seed)
                    stochastic_round_(old, value, gen)
            elif old is not value:
                state[key] = value
