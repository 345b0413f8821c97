"""Optimizers as chains of small gradient transforms.

    >>> import descentlab.optim as optim
    >>> opt = optim.create("adamw", model.parameters(), lr=3e-4, weight_decay=0.01)
    >>> opt = optim.chain(model.parameters(), optim.transforms.clip_by_global_norm(max_norm=1.0),
    ...                   optim.transforms.scale_by_adam(), lr=1e-3)

Every named optimizer is a ``torch.optim.Optimizer`` proven equal, step for
step, to its reference (see the registry and tests/optim/). ``create`` and
``get`` also take any other optimizer: ``"torch.optim:AdamW"``,
``"path/to/file.py:MyOpt"``, an entry point of ``descentlab.optimizers``, or the
class or factory itself (:mod:`.reference`).
"""

from . import named as _named  # noqa: F401  (registers the named optimizers)
from . import transforms
from .base import Hyper, Transform
from .chain import ChainOptimizer
from .create import UNIVERSAL, chain, create
from .groups import muon_groups, param_groups
from .reference import ForeignOptimizer, canonical, is_registered, origin, plugins
from .reference import lookup as get
from .registry import OptimizerSpec, available, register

__all__ = [
    "ChainOptimizer",
    "ForeignOptimizer",
    "Hyper",
    "OptimizerSpec",
    "Transform",
    "UNIVERSAL",
    "available",
    "canonical",
    "chain",
    "create",
    "get",
    "is_registered",
    "origin",
    "plugins",
    "muon_groups",
    "param_groups",
    "register",
    "transforms",
]
