"""Reference for mars: pytorch_optimizer.MARS (mars_type adamw and lion; its split of
1-D parameters into an AdamW-like rule with lr_1d, betas_1d and weight_decay_1d)."""

from pytorch_optimizer import MARS

from ._common import Reference


def _mars(groups, maximize=False, **hp):
    return MARS(groups, maximize=maximize, **hp)


REFERENCES = {
    "mars": Reference(
        _mars,
        [
            {"lr": 1e-3, "betas": (0.9, 0.999), "gamma": 0.05, "weight_decay": 0.1},
            {"lr": 2e-3, "mars_type": "lion", "weight_decay": 0.01, "weight_decay_1d": 0.0},
            {"lr": 3e-3, "optimize_1d": True, "ams_bound": True, "eps": 1e-6},
            {"lr": 1e-3, "lr_1d": 5e-4, "betas_1d": (0.8, 0.9), "gamma": 0.0, "maximize": True},
            {"lr": 0.02, "gamma": 0.5},
        ],
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "last_grad": "last_grad"},
        descent={"lr": 0.01},
    ),
}
