"""A researcher's own optimizer and schedule, as docs/your-own-optimizer.md walks through them.

Every command of that page names this file as ``docs/examples/my_optimizer.py:NAME``;
tests/test_docs_optimizer.py runs them.
"""

import torch


class Signum(torch.optim.Optimizer):
    """Signum: the sign of a momentum buffer (Bernstein et al. 2018, "signSGD", Algorithm 3).

    m ← β·m + (1 − β)·g;   p ← p − lr·(sign(m) + λ·p)

    The update has the same size in every coordinate, as Lion's (Chen et al. 2023),
    which is Signum with a second interpolation constant. ``weight_decay`` λ is
    decoupled (scaled by lr, not added to the gradient).
    """

    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0):
        if not lr > 0:
            raise ValueError(f"invalid lr={lr}: expected > 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"invalid momentum={momentum}: expected 0 <= momentum < 1")
        if not weight_decay >= 0:
            raise ValueError(f"invalid weight_decay={weight_decay}: expected >= 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                m = state["momentum_buffer"]
                m.mul_(beta).add_(p.grad, alpha=1 - beta)
                if decay:
                    p.mul_(1 - lr * decay)
                p.add_(torch.sign(m), alpha=-lr)
        return loss


def nesterov_sgd(params, lr=1e-2, **hparams):
    """A factory f(params, **hparams) that returns an optimizer: torch's SGD with Nesterov momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=hparams.pop("momentum", 0.9), nesterov=True, **hparams)


def linear_decay(step, total_steps, floor=0.0):
    """A schedule: the lr multiplier falls linearly from 1 to ``floor`` over the run."""
    return floor + (1 - floor) * max(0.0, 1 - step / total_steps)
