"""descentlab: optimization strategies for deep-learning training, built on PyTorch."""

__version__ = "0.1.0"

from . import optim, schedules, workloads  # noqa: E402,F401
from .train import Trainer  # noqa: E402,F401
from .workloads import Workload  # noqa: E402,F401

# ``descentlab.compare`` is the function (DESIGN.md's Python API); the package of
# the same name stays importable as ``from descentlab.compare import ...``.
from .compare.api import compare  # noqa: E402,F401,I001

# ``descentlab.benchmark`` likewise is the function; ``descentlab.benchmark.score`` and the
# other modules stay importable by their full names.
from .benchmark.api import benchmark  # noqa: E402,F401,I001
