"""Shared helpers: optimizers to schedule, runs of our schedulers and torch's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from descentlab import schedules

N = 1000  # steps of every torch comparison


def optimizer(lrs: Sequence[float] = (0.1,), kind: str = "sgd") -> torch.optim.Optimizer:
    """An optimizer with one param group per lr in ``lrs``."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    if kind == "adam":
        from descentlab import optim

        return optim.create("adam", groups, lr=lrs[0])
    raise ValueError(kind)


def record(opt: torch.optim.Optimizer, sched, steps: int, metrics: Sequence[float] | None = None):
    """The lrs of every group in the optimizer at t = 0..steps, stepping as a training loop does."""
    out = [[float(g["lr"]) for g in opt.param_groups]]
    for t in range(steps):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[t])
        out.append([float(g["lr"]) for g in opt.param_groups])
    return out


def ours(name: str, steps: int = N, lrs=(0.1,), kind: str = "sgd", metrics=None, **kw) -> list[list[float]]:
    opt = optimizer(lrs, kind)
    return record(opt, schedules.create(name, opt, **kw), steps, metrics)


def theirs(make: Callable[[torch.optim.Optimizer], object], steps: int = N, lrs=(0.1,), metrics=None):
    opt = optimizer(lrs)
    return record(opt, make(opt), steps, metrics)


def rel_diff(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """The largest relative difference of two lr sequences (0 where both are 0)."""
    assert len(a) == len(b)
    worst = 0.0
    for xs, ys in zip(a, b):
        for x, y in zip(xs, ys, strict=True):
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


def metric_series(n: int = N, seed: int = 0) -> list[float]:
    """A noisy decreasing loss with long plateaus, so that plateau reduces several times."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, generator=g, dtype=torch.float64)
    out, level = [], 1.0
    for i in range(n):
        if i % 150 < 40:
            level *= 0.99
        out.append(level + 0.02 * float(noise[i]))
    return out
