"""Optimizers as chains of small gradient transforms.

    >>> import descentlab.optim as optim
    >>> opt = optim.create("adamw", model.parameters(), lr=3e-4, weight_decay=0.01)
    >>> opt = optim.chain(model.parameters(), optim.transforms.clip_by_global_norm(max_norm=1.0),
    ...                   optim.transforms.scale_by_adam(), lr=1e-3)

Every named optimizer is a ``torch.optim.Optimizer`` proven equal, step for
step, to its reference (see the registry and tests/optim/).
"""

from . import named as _named  # noqa: F401  (registers the named optimizers)
from . import transforms
from .base import Hyper, Transform
from .chain import ChainOptimizer
from .create import UNIVERSAL, chain, create
from .groups import muon_groups, param_groups
from .registry import OptimizerSpec, available, get, register

__all__ = [
    "ChainOptimizer",
    "Hyper",
    "OptimizerSpec",
    "Transform",
    "UNIVERSAL",
    "available",
    "chain",
    "create",
    "get",
    "muon_groups",
    "param_groups",
    "register",
    "transforms",
]
