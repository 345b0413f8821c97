"""Default recipes and per-optimizer default learning rates.

A recipe is a plain dict (see :attr:`Workload.recipe`). A workload's default
learning rates come from two anchors measured on it, the good lr of Adam and
of momentum SGD, and ratios for the other optimizers. The ratios were read
off lr sweeps (a 3×-spaced grid, final validation metric, recipe budget) on
linreg, digits-mlp, mnist1d-mlp (1500 steps) and mnist1d-cnn (2000 steps),
taking an lr inside each optimizer's plateau of good values rather than at
its edge:

======================================  ==============================================
optimizers                              default lr (a: Adam's, m: momentum SGD's)
======================================  ==============================================
adam, amsgrad, adamw, nadam, radam,     a
adamw_schedulefree
adamax                                  2a (Kingma & Ba's defaults, 2e-3 vs 1e-3)
rmsprop                                 a/2 (no bias correction: larger first steps)
adagrad                                 10a (its accumulator only shrinks the steps)
lion                                    a/5 (Chen et al. 2023: 3-10× below AdamW's;
                                        at a it fails on mnist1d-mlp)
momentum, nesterov                      m
sgd                                     5m (10m, the same long-run step as momentum
                                        0.9, is at the edge on mnist1d-cnn: 0.3
                                        trains, 1.0 diverges)
lamb                                    3e-3 (its steps are relative: lr·‖p‖ per tensor)
lars                                    1.0, 3.0 on mnist1d (steps η·lr·‖p‖ per
                                        weight, η = 1e-3)
adafactor                               0.3 (relative steps, capped at 1/√t)
muon                                    0.01 (orthogonalised 2-D steps; biases and
                                        conv kernels use its adamw_lr instead)
adadelta, prodigy                       1.0 (both set their own step size)
ademamix, adopt, mars, soap             a (issue 33; not swept: their papers tune them on
                                        Adam's lr grid and take Adam-like lrs)
shampoo                                 m (its default SGD grafting with heavy-ball
                                        momentum gives steps of momentum SGD's size)
kron                                    a/3 (PSGD-Kron's authors: about 3× below Adam's)
normuon                                 the muon anchor (its steps are Muon's, normalized
                                        per row to the same RMS)
======================================  ==============================================

The issue-33 ratios were not read off sweeps here (the sweeps of the others took
hours of this machine); tuning searches a factor of 30 either side of them
(``tune/space.py``), and the benchmark's external ruleset centres each strategy's
range on its own lr range test.

The anchors per workload: linreg a = 0.03, m = 0.01; diabetes a = 3e-3,
m = 3e-3; digits a = 3e-3, m = 0.02; mnist1d a = 1e-2, m = 0.05; mnist-cnn
a = 1e-3, m = 0.02 (common MNIST values, not measured here: no MNIST files
were at hand). Each recipe's lr is its optimizer's default here.

With these defaults every optimizer trains every workload (checked for
linreg, diabetes, digits-mlp, digits-cnn over the recipe's budget and
mnist1d-mlp/-cnn over 1000 steps) except on linreg, whose intercept
(drawn from N(0, 1)) neither LAMB (per-tensor relative steps from a small
initial bias) nor Muon (the bias falls to its adamw_lr of 3e-4) reaches in
the budget.
"""

from __future__ import annotations

from typing import Any

RECIPE_KEYS = ("optimizer", "lr", "optimizer_kwargs", "weight_decay", "schedule", "schedule_kwargs",
               "batch_size", "epochs", "steps")


def recipe(
    optimizer: str,
    lr: float,
    *,
    batch_size: int | str,
    epochs: int | None = None,
    steps: int | None = None,
    schedule: str | None = None,
    schedule_kwargs: dict[str, Any] | None = None,
    weight_decay: float = 0.0,
    optimizer_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A recipe dict with every key of :data:`RECIPE_KEYS`; exactly one of
    ``epochs`` and ``steps``."""
    if (epochs is None) == (steps is None):
        raise ValueError("a recipe sets exactly one of epochs and steps")
    return {
        "optimizer": optimizer,
        "lr": lr,
        "optimizer_kwargs": dict(optimizer_kwargs or {}),
        "weight_decay": weight_decay,
        "schedule": schedule,
        "schedule_kwargs": dict(schedule_kwargs or {}),
        "batch_size": batch_size,
        "epochs": epochs,
        "steps": steps,
    }


def steps_per_epoch(n_train: int, batch_size: int | str) -> int:
    """Optimizer steps in one epoch of ``n_train`` examples (the last batch kept)."""
    if batch_size == "full":
        return 1
    return -(-n_train // int(batch_size))


def _registered() -> set[str]:
    from ..optim import available

    return set(available())


def lr_defaults(*, adam: float, momentum: float, lamb: float = 3e-3, lars: float = 1.0,
                adafactor: float = 0.3, muon: float = 0.01) -> dict[str, float]:
    """The default lr of every named optimizer from a workload's anchors (see
    the table in this module's docstring), rounded to 3 significant digits."""
    table = {
        "sgd": 5 * momentum,
        "momentum": momentum,
        "nesterov": momentum,
        "adam": adam,
        "amsgrad": adam,
        "adamw": adam,
        "adagrad": 10 * adam,
        "rmsprop": adam / 2,
        "adadelta": 1.0,
        "adamax": 2 * adam,
        "nadam": adam,
        "radam": adam,
        "adafactor": adafactor,
        "muon": muon,
        "lion": adam / 5,
        "lamb": lamb,
        "lars": lars,
        "prodigy": 1.0,
        "adamw_schedulefree": adam,
        "ademamix": adam,
        "adopt": adam,
        "mars": adam,
        "normuon": muon,
        "soap": adam,
        "shampoo": momentum,
        "kron": adam / 3,
    }
    names = _registered()
    table = {name: lr for name, lr in table.items() if name in names}
    return {name: float(f"{lr:.3g}") for name, lr in table.items()}
