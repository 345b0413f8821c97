"""Learning-rate schedules as pure functions of the step.

Each function returns the learning rate at step ``t`` (``t = 0`` is the lr of
the first optimizer step) of a param group whose own lr is ``lr``. Arguments
that are learning rates (``min_lr``, ``max_lr``, ``base_lr``) are absolute, as
in torch; everything else scales with ``lr``, so param groups with different
lrs are scheduled proportionally.

Where torch has the same schedule, the arithmetic follows torch's closed form
(``torch.optim.lr_scheduler``, 2.x), so the values equal torch's step-by-step
scheduler to rounding (its recursive updates drift ~1e-15 relative) or
exactly where torch computes in closed form (CyclicLR, OneCycleLR).

Warmup (``warmup``) and ``plateau`` (see ``plateau.py``) compose with these.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence


def constant(t: int, lr: float) -> float:
    """``lr_t = lr``."""
    return lr


def step(t: int, lr: float, *, step_size: int, gamma: float = 0.1) -> float:
    """Step decay: ``lr_t = lr · gamma^floor(t / step_size)``.

    Source: torch.optim.lr_scheduler.StepLR (closed form); the "step" schedule
    of He et al. 2016, "Deep Residual Learning for Image Recognition".
    """
    return lr * gamma ** (t // step_size)


def multistep(t: int, lr: float, *, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """Decay at given steps: ``lr_t = lr · gamma^(number of milestones <= t)``.

    Source: torch.optim.lr_scheduler.MultiStepLR (closed form).
    """
    return lr * gamma ** bisect_right(milestones, t)


def exponential(t: int, lr: float, *, gamma: float) -> float:
    """``lr_t = lr · gamma^t``.

    Source: torch.optim.lr_scheduler.ExponentialLR (closed form). ``gamma > 1``
    grows the lr (the learning-rate range test).
    """
    return lr * gamma**t


def inverse_time(t: int, lr: float, *, decay: float) -> float:
    """``lr_t = lr / (1 + decay · t)``.

    Source: the ``decay`` argument of the Keras 2 optimizers
    (``lr * 1 / (1 + decay * iterations)``), i.e.
    ``keras.optimizers.schedules.InverseTimeDecay`` with ``decay_steps=1``.
    """
    return lr / (1 + decay * t)


def cosine(t: int, lr: float, *, total_steps: int, min_lr: float = 0.0) -> float:
    """Cosine annealing from ``lr`` at t = 0 to ``min_lr`` at t = ``total_steps``:

    ``lr_t = min_lr + (lr − min_lr) · (1 + cos(π t / total_steps)) / 2``.

    Source: Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with
    Warm Restarts" (without restarts); torch.optim.lr_scheduler.CosineAnnealingLR.
    As torch's, the formula holds for every t: past ``total_steps`` the cosine
    continues and the lr rises again (torch and the Hugging Face Trainer do the
    same); size ``total_steps`` to the run.
    """
    if t == 0:  # exactly the group's lr, as torch's first step
        return lr
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t / total_steps)) / 2


def polynomial(t: int, lr: float, *, total_steps: int, power: float = 1.0) -> float:
    """``lr_t = lr · (1 − min(t, total_steps) / total_steps)^power``; 0 from ``total_steps`` on.

    Source: torch.optim.lr_scheduler.PolynomialLR (closed form); the "poly"
    policy of Chen et al. 2017, DeepLab (arXiv:1606.00915).
    """
    return lr * (1.0 - min(total_steps, t) / total_steps) ** power


def cyclic(
    t: int,
    lr: float,
    *,
    max_lr: float,
    base_lr: float | None = None,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> float:
    """Cyclical learning rate between ``base_lr`` (default: the group's lr) and ``max_lr``.

    With ``up = step_size_up``, ``down = step_size_down`` (default ``up``),
    ``cycle = floor(1 + t / (up + down))`` and ``x`` the position in the cycle:
    the lr rises linearly for ``up`` steps and falls for ``down`` steps;
    ``lr_t = base_lr + (max_lr − base_lr) · h(x) · s`` where ``s`` is 1
    ("triangular"), ``1 / 2^(cycle − 1)`` ("triangular2") or ``gamma^t``
    ("exp_range").

    Source: Smith 2017, "Cyclical Learning Rates for Training Neural Networks"
    (arXiv:1506.01186); arithmetic of torch.optim.lr_scheduler.CyclicLR (values
    equal exactly). Momentum is not cycled.
    """
    low = lr if base_lr is None else base_lr
    up = float(step_size_up)
    total = up + (float(step_size_down) if step_size_down is not None else up)
    ratio = up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    height = (max_lr - low) * scale
    if mode == "triangular":
        return low + height * 1.0
    if mode == "triangular2":
        return low + height * (1 / (2.0 ** (cycle - 1)))
    return low + height * gamma**t  # exp_range


def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def one_cycle(
    t: int,
    lr: float,
    *,
    total_steps: int,
    max_lr: float | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> float:
    """The 1cycle policy: from ``max_lr / div_factor`` up to ``max_lr`` (default:
    the group's lr) over ``pct_start · total_steps`` steps, then down to
    ``max_lr / (div_factor · final_div_factor)`` at step ``total_steps − 1``
    (``three_phase``: back down to the start, then to the minimum), annealing by
    cosine or linearly.

    Source: Smith & Topin 2019, "Super-Convergence" (arXiv:1708.07120);
    arithmetic of torch.optim.lr_scheduler.OneCycleLR (values equal exactly,
    up to and including t = ``total_steps``, where torch extrapolates the last
    phase one step; later steps, at which torch raises, keep the minimum).
    Momentum is not cycled.
    """
    peak = lr if max_lr is None else max_lr
    start = peak / div_factor
    low = start / final_div_factor
    if t > total_steps:
        return low
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, start, peak),
            (float(2 * pct_start * total_steps) - 2, peak, start),
            (total_steps - 1, start, low),
        ]
    else:
        phases = [(float(pct_start * total_steps) - 1, start, peak), (total_steps - 1, peak, low)]
    begin = 0.0
    for i, (end_step, a, b) in enumerate(phases):
        if t <= end_step or i == len(phases) - 1:
            return _anneal(a, b, (t - begin) / (end_step - begin), anneal_strategy)
        begin = end_step
    raise AssertionError("unreachable")  # pragma: no cover


#: decay shapes of ``wsd``: fraction of (lr − min_lr) left at progress p ∈ [0, 1]
WSD_DECAYS = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: (1 + math.cos(math.pi * p)) / 2,
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),
}


def wsd(
    t: int,
    lr: float,
    *,
    stable_steps: int,
    decay_steps: int,
    min_lr: float = 0.0,
    decay_type: str = "linear",
) -> float:
    """Warmup–stable–decay, after its warmup: ``lr`` for ``stable_steps`` steps,
    then a decay to ``min_lr`` over ``decay_steps`` steps, then ``min_lr``:

    ``p = clip((t − stable_steps) / decay_steps, 0, 1)``,
    ``lr_t = min_lr + (lr − min_lr) · shape(p)`` with ``decay_type`` ``1 − p`` ("linear"),
    ``(1 + cos πp) / 2`` ("cosine") or ``1 − √p`` ("1-sqrt").

    Sources: Hu et al. 2024, "MiniCPM" (arXiv:2404.06395), which introduced
    WSD; Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
    Fixed Training Durations" (arXiv:2405.18392), for the linear and 1-sqrt
    cooldowns. The warmup is the generic one (see ``warmup``).
    """
    if t < stable_steps:
        return lr
    p = min(1.0, (t - stable_steps) / decay_steps)
    return min_lr + (lr - min_lr) * WSD_DECAYS[decay_type](p)


def warmup(t: int, target: float, *, warmup_steps: int, start_factor: float = 0.0) -> float:
    """Linear warmup: ``target · (s + (1 − s) · t / warmup_steps)`` for ``t < warmup_steps``.

    ``target`` is the schedule's value when the warmup ends (its value at its
    own step 0), ``s = start_factor``. Source: Goyal et al. 2017, "Accurate,
    Large Minibatch SGD" (gradual warmup), as torch's LinearLR with
    ``end_factor=1``.
    """
    return target * (start_factor + (1.0 - start_factor) * t / warmup_steps)
