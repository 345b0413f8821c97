"""descentlab: optimization strategies for deep-learning training, built on PyTorch."""

__version__ = "0.1.0"

from . import optim, schedules  # noqa: E402,F401
from .train import Trainer  # noqa: E402,F401
