"""A user's own optimizers and schedules, named by the tests as ``path/to/this/file.py:NAME``
(not imported as a package module: a file, as a researcher would write one)."""

import math

import torch


class HeavyBall(torch.optim.Optimizer):
    """Heavy-ball momentum written by hand: v = μv + g, p -= lr·v (Polyak 1964)."""

    def __init__(self, params, lr=0.05, momentum=0.9):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(group["momentum"]).add_(p.grad)
                p.add_(v, alpha=-group["lr"])


def adamw_factory(params, lr=3e-3, **hparams):
    """A factory f(params, **hparams) that returns torch's AdamW."""
    return torch.optim.AdamW(params, lr=lr, **hparams)


class NoDefaultLr(torch.optim.SGD):
    """SGD whose lr has no default."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)


class NotAnOptimizer:
    pass


def returns_a_number(params, **hparams):
    return 42


def warm_linear(step, total_steps, warm=10):
    """Linear warmup over `warm` steps, then linear decay to 0 at total_steps."""
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total_steps - step) / max(1, total_steps - warm))


def half_cosine(step, total_steps):
    return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def not_finite(step, total_steps):
    return float("nan")


def negative(step, total_steps):
    return -1.0


def one_argument(step):
    return 1.0


LEARNING_RATE = 0.1  # not callable
