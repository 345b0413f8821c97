"""Reference for lion: lion_pytorch.Lion (its default decoupled_weight_decay=False:
p ← p·(1 − lr·wd), with the group's current lr)."""

import torch
from lion_pytorch import Lion

from ._common import Reference


class _MaximizingLion(Lion):
    """lion_pytorch has no ``maximize``: ascending is descending on −g."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.neg_()
        return super().step(closure)


def _lion(groups, maximize=False, **hp):
    return (_MaximizingLion if maximize else Lion)(groups, **hp)


REFERENCES = {
    "lion": Reference(
        _lion,
        [
            {"lr": 3e-4, "betas": (0.8, 0.95)},
            {"lr": 2e-4, "weight_decay": 1.0},
            {"lr": 1e-3, "betas": (0.95, 0.98), "weight_decay": 0.1, "maximize": True},
        ],
        {"exp_avg": "exp_avg"},
        descent={"lr": 0.01},
    ),
}
