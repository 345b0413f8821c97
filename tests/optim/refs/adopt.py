"""Reference for adopt: pytorch_optimizer.ADOPT, its ``clip_lambda`` callable built from
our ``clip_exponent`` (None: no clipping)."""

import math

from pytorch_optimizer import ADOPT

from ._common import Reference


def _adopt(groups, clip_exponent=0.25, maximize=False, **hp):
    clip = None if clip_exponent is None else (lambda step: math.pow(step, clip_exponent))
    return ADOPT(groups, clip_lambda=clip, maximize=maximize, **hp)


REFERENCES = {
    "adopt": Reference(
        _adopt,
        [
            {"lr": 3e-3, "betas": (0.8, 0.999)},
            {"lr": 1e-3, "weight_decay": 0.1, "clip_exponent": None},
            {"lr": 2e-3, "weight_decay": 0.05, "weight_decouple": True, "eps": 1e-4},
            {"lr": 1e-3, "clip_exponent": 0.1, "betas": (0.95, 0.5), "maximize": True},
        ],
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
        descent={"lr": 0.03},
    ),
}
