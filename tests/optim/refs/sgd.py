"""References for sgd, momentum, nesterov: torch.optim.SGD."""

import torch

from ._common import Reference


def _sgd(groups, **hp):
    return torch.optim.SGD(groups, **hp)


_VARIANTS = [
    {"lr": 0.05, "weight_decay": 0.01},
    {"lr": 0.02, "momentum": 0.5, "dampening": 0.1},
    {"lr": 0.01, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001},
    {"lr": 0.03, "maximize": True},
]
_STATE = {"momentum_buffer": "momentum_buffer"}

REFERENCES = {
    "sgd": Reference(_sgd, _VARIANTS, _STATE, descent={"lr": 1e-3}),
    "momentum": Reference(_sgd, _VARIANTS, _STATE, descent={"lr": 1e-4}),
    # Nesterov rejects dampening (as torch does), so its second variant has none.
    "nesterov": Reference(
        _sgd,
        [_VARIANTS[0], {"lr": 0.02, "momentum": 0.5}, *_VARIANTS[2:]],
        _STATE,
        descent={"lr": 1e-4},
    ),
}
