"""The experiment layer: a configured run, from settings to files.

``config -> workload -> optimizer/schedule -> Trainer -> files``: this layer
reads a :class:`TrainConfig` (flags, YAML), loads the workload, builds the
optimizer and schedule, drives :class:`descentlab.train.Trainer` and writes the
run folder (config.json, summary.json, metrics.csv, checkpoints/, the run
store). The Trainer below it knows nothing of files other than checkpoints;
``compare`` above it runs many of these.
"""

from .config import TrainConfig
from .parallel import run_parallel, train
from .run import resolve, run_training

__all__ = ["TrainConfig", "resolve", "run_parallel", "run_training", "train"]
