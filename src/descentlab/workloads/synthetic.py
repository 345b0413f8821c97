"""``linreg``: synthetic linear regression, y = X·w + b + ε, fitted by a linear model."""

from __future__ import annotations

import math

from . import data
from .assemble import regression
from .base import Workload
from .models import mlp
from .recipes import lr_defaults, recipe
from .registry import register

N_EXAMPLES = 1000
N_FEATURES = 10
NOISE = 0.3


@register("linreg", f"synthetic linear regression, {N_FEATURES} features, noise sd {NOISE}; a linear model")
def linreg(seed: int, data_dir=None) -> Workload:
    """Draws ``w ~ N(0, I/d)``, ``b ~ N(0, 1)``, ``x ~ N(0, I)``, ``ε ~ N(0, 0.3²)``
    from ``seed`` (so Var(x·w) ≈ 1 and the best possible R² is about
    1/(1 + 0.09) ≈ 0.92), splits 20% test and 10% of the rest for val, and
    standardises x per feature with train statistics; y stays as drawn. The
    model is one ``nn.Linear(10, 1)``: the loss is convex, and the problem is
    the classic testbed for batch, mini-batch and stochastic gradient descent.
    """
    g = data.rng(seed, "data")
    w = g.standard_normal(N_FEATURES) / math.sqrt(N_FEATURES)
    b = g.standard_normal()
    x = g.standard_normal((N_EXAMPLES, N_FEATURES))
    y = x @ w + b + NOISE * g.standard_normal(N_EXAMPLES)

    train, val, test = data.train_val_test(N_EXAMPLES, seed)
    oracle = x[test] @ w + b  # the noiseless truth: the best any model can do
    oracle_r2 = 1 - ((y[test] - oracle) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum()
    xs = data.standardize(x[train], x[val], x[test], per_feature=True)
    splits = [(data.as_inputs(xi), data.as_inputs(y[i])) for xi, i in zip(xs, (train, val, test))]
    return regression(
        "linreg", "synthetic linear regression y = Xw + b + noise (10 features), linear model",
        train=splits[0], val=splits[1], test=splits[2],
        make_model=lambda: mlp([N_FEATURES, 1], regression=True),
        recipe=recipe("sgd", 0.05, batch_size=32, epochs=20),
        lr_defaults=lr_defaults(adam=0.03, momentum=0.01),
        seed=seed,
        info={
            "source": "synthetic",
            "generation": {"n": N_EXAMPLES, "features": N_FEATURES, "noise_sd": NOISE},
            "preprocessing": "x standardised per feature with train statistics",
            "sizes": {s: len(i) for s, i in zip(("train", "val", "test"), (train, val, test))},
            "oracle_test_r2": float(oracle_r2),
        },
    )
