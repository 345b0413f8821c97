"""Default recipes and per-optimizer default learning rates.

A recipe is a plain dict (see :attr:`Workload.recipe`). The default learning
rates of a workload come from two measured anchors, the best lr of Adam and
of momentum SGD on it, and fixed ratios for the other optimizers; the ratios
are the rules of thumb of each method's paper or reference implementation,
checked on the small workloads (benchmarks/workload_lrs.py):

==========================================  =====================================
optimizers                                  default lr
==========================================  =====================================
adam, amsgrad, adamw, nadam, radam,         Adam's
adamw_schedulefree
adamax                                      2 × Adam's (Kingma & Ba's default
                                            ratio, 2e-3 vs 1e-3)
rmsprop                                     Adam's
adagrad                                     10 × Adam's (torch's 1e-2 vs 1e-3)
lion                                        Adam's / 5 (Chen et al. 2023: 3–10×
                                            smaller than AdamW's)
sgd                                         10 × momentum SGD's (the same
                                            effective step, lr/(1 − 0.9))
momentum, nesterov                          momentum SGD's
lars                                        measured (per-tensor trust ratio)
lamb, adafactor                             measured (relative, per-tensor steps)
muon                                        measured (orthogonalised steps)
adadelta, prodigy                           1.0 (both set their own step size)
==========================================  =====================================
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


def lr_defaults(*, adam: float, momentum: float, lamb: float, lars: float, adafactor: float,
                muon: float) -> dict[str, float]:
    """The default lr of every named optimizer, from the measured anchors
    (see the table in this module's docstring)."""
    table = {
        "sgd": 10 * momentum,
        "momentum": momentum,
        "nesterov": momentum,
        "adam": adam,
        "amsgrad": adam,
        "adamw": adam,
        "adagrad": 10 * adam,
        "rmsprop": adam,
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
    }
    return {name: float(f"{lr:.3g}") for name, lr in table.items()}
