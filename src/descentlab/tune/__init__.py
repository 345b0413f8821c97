"""Choosing hyperparameters: the learning-rate range test (:func:`lr_find`,
:mod:`descentlab.tune.range_test`) and Optuna searches over whole strategies
(:func:`tune`, :mod:`descentlab.tune.study`)."""

from __future__ import annotations

from typing import Any

from .range_test import LRFindResult, lr_find

__all__ = ["lr_find", "LRFindResult", "tune"]


def __getattr__(name: str) -> Any:  # lazy: importing descentlab.tune does not import optuna
    if name == "tune":
        from .study import tune

        return tune
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
