"""Training: the Trainer, its callbacks, checkpoints and history."""

from .best import BestTracker
from .callbacks import Callback, CsvLogger, Diagnostics, EarlyStopping, ProgressBar, SameStart
from .checkpoint import CheckpointError
from .history import History
from .tensorboard import TensorBoardLogger
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "BestTracker",
    "Callback",
    "CheckpointError",
    "CsvLogger",
    "Diagnostics",
    "EarlyStopping",
    "History",
    "NonFiniteLossError",
    "ProgressBar",
    "SameStart",
    "TensorBoardLogger",
    "Trainer",
]
