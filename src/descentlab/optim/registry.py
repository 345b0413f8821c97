"""The one table of named optimizers.

Each named optimizer is one :class:`OptimizerSpec`: its hyperparameters with the
reference's names and defaults, and the chain that implements it. The tests are
generated from this table (see tests/optim/), so a new optimizer is one entry
here plus one reference entry in the tests, and it gets every test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..names import unknown_name
from .base import Transform


@dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer.

    Attributes:
        name: the registry name (``optim.create(name, ...)``).
        summary: one line for ``descentlab list optimizers``.
        defaults: hyperparameter names and defaults, as the reference names them.
        build: returns a fresh chain of transforms; hyperparameters are read
            from the param groups at every step.
        reference: what it is proven equal to (text, e.g. "torch.optim.Adam").
        paper: the citation of the algorithm.
        split_groups: optional ``f(groups, hparams) -> groups``, for optimizers
            that treat some parameters differently (Muon: 2-D weights vs the rest).
        fused_step: optional one-pass kernel for the fast path.
    """

    name: str
    summary: str
    defaults: Mapping[str, Any]
    build: Callable[[], Sequence[Transform]]
    reference: str
    paper: str
    split_groups: Callable[[list[dict], dict[str, Any]], list[dict]] | None = None
    fused_step: Callable[..., bool] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, OptimizerSpec] = {}


def register(spec: OptimizerSpec) -> OptimizerSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"optimizer {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def available() -> list[str]:
    """Names of the registered optimizers, in registration order."""
    return list(_REGISTRY)


def get(name: str) -> OptimizerSpec:
    """The spec of ``name``; an unknown name raises ValueError listing close matches."""
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise unknown_name("optimizer", name, _REGISTRY)
