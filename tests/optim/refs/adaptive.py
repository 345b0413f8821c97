"""References for adagrad, rmsprop, adadelta, adamax, nadam, radam: their
torch.optim namesakes (single-tensor path on CPU)."""

import torch

from ._common import Reference


def _torch(cls):
    def factory(groups, **hp):
        return cls(groups, **hp)

    return factory


_ADAGRAD = [
    {"lr": 0.05, "lr_decay": 0.01},
    {"lr": 0.02, "weight_decay": 0.1, "initial_accumulator_value": 0.1},
    {"lr": 0.03, "eps": 1e-6, "lr_decay": 0.001, "maximize": True},
]
_RMSPROP = [
    {"lr": 0.005, "alpha": 0.9, "eps": 1e-6},
    {"lr": 0.003, "centered": True, "weight_decay": 0.05},
    {"lr": 0.002, "momentum": 0.9},
    {"lr": 0.001, "centered": True, "momentum": 0.5, "weight_decay": 0.01, "maximize": True},
]
_ADADELTA = [
    {"lr": 0.5, "rho": 0.95},
    {"weight_decay": 0.1, "eps": 1e-5},
    {"lr": 2.0, "rho": 0.5, "maximize": True},
]
_ADAMAX = [
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 0.003, "weight_decay": 0.1},
    {"lr": 0.005, "maximize": True},
]
_NADAM = [
    {"lr": 0.01, "betas": (0.8, 0.99)},
    {"momentum_decay": 0.02, "eps": 1e-6},
    {"lr": 0.003, "weight_decay": 0.1},
    {"lr": 0.003, "weight_decay": 0.1, "decoupled_weight_decay": True},
    {"maximize": True, "momentum_decay": 0.0},
]
_RADAM = [
    # rho_inf = 19: rectified from step 6 on (as the default betas, rho_inf = 1999).
    {"lr": 0.01, "betas": (0.8, 0.9)},
    # rho_inf = 3: never rectified, momentum SGD throughout.
    {"lr": 0.005, "betas": (0.9, 0.5), "eps": 1e-6},
    {"lr": 0.003, "weight_decay": 0.1},
    {"lr": 0.003, "weight_decay": 0.1, "decoupled_weight_decay": True},
    {"maximize": True},
]

REFERENCES = {
    "adagrad": Reference(
        _torch(torch.optim.Adagrad), _ADAGRAD, {"sum": "sum"}, descent={"lr": 0.1}
    ),
    "rmsprop": Reference(
        _torch(torch.optim.RMSprop),
        _RMSPROP,
        {"square_avg": "square_avg", "grad_avg": "grad_avg", "momentum_buffer": "momentum_buffer"},
        descent={"lr": 0.01},
    ),
    "adadelta": Reference(
        _torch(torch.optim.Adadelta),
        _ADADELTA,
        {"square_avg": "square_avg", "acc_delta": "acc_delta"},
        descent={"lr": 1.0},
    ),
    "adamax": Reference(
        _torch(torch.optim.Adamax),
        _ADAMAX,
        {"exp_avg": "exp_avg", "exp_inf": "exp_inf"},
        descent={"lr": 0.05},
    ),
    "nadam": Reference(
        _torch(torch.optim.NAdam),
        _NADAM,
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "mu_product": "mu_product"},
        descent={"lr": 0.02},
    ),
    "radam": Reference(
        _torch(torch.optim.RAdam),
        _RADAM,
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
        # Its first 5 steps are un-rectified momentum SGD (lr·m̂, no division by
        # √v), which Rosenbrock's gradient (~150 at the start) blows up from lr 0.02.
        descent={"lr": 0.01},
    ),
}
