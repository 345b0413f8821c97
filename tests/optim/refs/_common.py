"""The reference table's record: how to build the trusted implementation of a
named optimizer from our hyperparameters, and which settings to test."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reference:
    """One optimizer's reference.

    factory(groups, **hparams) -> an object with step()/zero_grad() (and
        ``state`` when the reference exposes it), built from param groups (a
        list of dicts, our hyperparameter names) and our hyperparameters.
    variants: non-default hyperparameter sets; each is tested alone. Include
        at least one with weight decay.
    state_map: our state key -> the reference's state key, compared after the run.
    descent: hyperparameters under which the optimizer should lower the
        quadratic and Rosenbrock test functions (e.g. a suitable lr; the
        Rosenbrock valley has curvature ~1000, so plain SGD needs lr < 2e-3).
    params: "any" (all shapes) or "matrix" (2-D weights only, e.g. Muon's
        reference accepts nothing else).
    rtol32/rtol64: allowed relative difference in float32 / float64.
    """

    factory: Callable[..., Any]
    variants: Sequence[Mapping[str, Any]] = ()
    state_map: Mapping[str, str] = field(default_factory=dict)
    descent: Mapping[str, Any] = field(default_factory=dict)
    params: str = "any"
    rtol32: float = 1e-5
    rtol64: float = 1e-9
    note: str = ""
