"""References for adam, amsgrad, adamw: torch.optim.Adam and AdamW."""

import torch

from ._common import Reference

_VARIANTS = [
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 0.003, "weight_decay": 0.1},
    {"lr": 0.002, "amsgrad": True, "weight_decay": 0.01},
    {"lr": 0.001, "amsgrad": False, "maximize": True},
]
_STATE = {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "max_exp_avg_sq": "max_exp_avg_sq"}

REFERENCES = {
    "adam": Reference(lambda g, **hp: torch.optim.Adam(g, **hp), _VARIANTS, _STATE, {"lr": 0.05}),
    "amsgrad": Reference(lambda g, **hp: torch.optim.Adam(g, **hp), _VARIANTS, _STATE, {"lr": 0.05}),
    "adamw": Reference(lambda g, **hp: torch.optim.AdamW(g, **hp), _VARIANTS, _STATE, {"lr": 0.05}),
}
