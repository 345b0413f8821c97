"""Reference for ademamix: pytorch_optimizer.AdEMAMix (its per-tensor and foreach paths)."""

from pytorch_optimizer import AdEMAMix

from ._common import Reference


def _ademamix(groups, maximize=False, **hp):
    return AdEMAMix(groups, maximize=maximize, **hp)


REFERENCES = {
    "ademamix": Reference(
        _ademamix,
        [
            {"lr": 3e-3, "betas": (0.8, 0.99, 0.999), "alpha": 2.0},
            {"lr": 1e-3, "t_alpha_beta3": 40, "weight_decay": 0.1},
            {"lr": 2e-3, "weight_decay": 0.05, "weight_decouple": True, "eps": 1e-6},
            {"lr": 1e-3, "t_alpha_beta3": 150.0, "alpha": 8.0, "maximize": True},
        ],
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "exp_avg_slow": "exp_avg_slow"},
        descent={"lr": 0.01},
    ),
}
