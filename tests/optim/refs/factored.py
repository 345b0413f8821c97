"""Reference for adafactor: torch.optim.Adafactor (same names and defaults)."""

import torch

from ._common import Reference


def _adafactor(groups, **hp):
    return torch.optim.Adafactor(groups, **hp)


_VARIANTS = [
    {"lr": 0.05, "beta2_decay": -0.5, "eps": (1e-12, 1e-3)},
    {"lr": 0.02, "weight_decay": 0.1},
    {"lr": 0.01, "d": 2.0, "eps": (None, 1e-2), "weight_decay": 0.01},
    {"lr": 0.3, "d": 1.5, "beta2_decay": 0.0},
    {"lr": 0.01, "maximize": True},
]

REFERENCES = {
    "adafactor": Reference(
        _adafactor,
        _VARIANTS,
        {"row_var": "row_var", "col_var": "col_var", "variance": "variance"},
        descent={"lr": 0.05},
    ),
}
