"""The building blocks: small gradient transformations (see ``base.Transform``).

Lowercase names (``scale_by_adam``) are the classes (``ScaleByAdam``), so
``scale_by_adam(betas=(0.9, 0.99))`` reads like optax.
"""

from .adam import *  # noqa: F401,F403
from .adaptive import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
from .combine import *  # noqa: F401,F403
from .factored import *  # noqa: F401,F403
from .mask import *  # noqa: F401,F403
from .momentum import *  # noqa: F401,F403
from .orthogonal import *  # noqa: F401,F403
from .prodigy import *  # noqa: F401,F403
from .regularize import *  # noqa: F401,F403
from .scale import *  # noqa: F401,F403
from .schedulefree import *  # noqa: F401,F403
from .sign import *  # noqa: F401,F403
from .trust import *  # noqa: F401,F403
from .ademamix import *  # noqa: F401,F403
from .adopt import *  # noqa: F401,F403
from .cautious import *  # noqa: F401,F403
from .mars import *  # noqa: F401,F403
from .soap import *  # noqa: F401,F403
from .shampoo import *  # noqa: F401,F403
from .kron import *  # noqa: F401,F403
