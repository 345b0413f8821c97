"""TensorBoard event files from a fit: one scalar series per History column.

    >>> from descentlab.train.tensorboard import TensorBoardLogger
    >>> trainer = Trainer(model, opt, loss_fn, callbacks=[TensorBoardLogger("runs", run_name="adamw")])

then ``tensorboard --logdir runs``. Each History row (the training rows:
``train_loss``, ``lr``, ``grad_norm``; the validation rows: ``val_loss``,
``val_<metric>``; and whatever other callbacks log, e.g. Diagnostics'
``update_ratio``) becomes ``add_scalar(column, value, global_step=row["step"])``.
``step``, ``epoch`` and ``seconds`` are the axes, not series. The tags are the
History's column names, so a ``compare`` (one ``run_name`` per run) shows the
runs side by side in each chart.

Writing follows the History rather than the hooks' ``logs``, so the event
files hold exactly the History's rows, including rows that other callbacks add.

Resume: nothing to carry in a checkpoint. Events are flushed at every
checkpoint, so everything up to a checkpoint's step T is on disk; a run
resumed from it starts a writer with ``purge_step=T + 1`` in the same
folder, and TensorBoard's reader drops the events the interrupted run wrote
after step T (the resumed run writes steps T + 1, ... again). torch's
``purge_step`` is "the step a restarted run logs first": after a resume from
step T that is T + 1, since step T's rows are already there.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

#: History columns that are axes, not series.
AXES = ("step", "epoch", "seconds")


def _scalar(value: Any) -> float | None:
    """The row value as a float, or None when it is not a real number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 and not value.is_complex() else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None


class TensorBoardLogger(Callback):
    """Write the History's scalars to TensorBoard event files in ``log_dir``.

    Args:
        log_dir: the folder given to ``tensorboard --logdir``.
        run_name: optional subfolder of ``log_dir`` for this run (``compare``
            gives each strategy and seed its own, shown as separate runs).
        flush_secs: how often the writer flushes by itself (it also flushes at
            every checkpoint and closes at the end of the fit).

    Only rank 0 writes when training data-parallel. Needs the ``tensorboard``
    package (torch.utils.tensorboard's writer).
    """

    def __init__(self, log_dir: str | os.PathLike, run_name: str | None = None, *, flush_secs: int = 30):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch raises this when tensorboard is missing
            raise ImportError(
                f"TensorBoardLogger needs the tensorboard package (pip install tensorboard): {error}"
            ) from error
        if run_name is not None and (not isinstance(run_name, str) or not run_name.strip()):
            raise ValueError(f"invalid run_name={run_name!r}: expected a non-empty string or None")
        if isinstance(flush_secs, bool) or not isinstance(flush_secs, int) or flush_secs < 1:
            raise ValueError(f"invalid flush_secs={flush_secs!r}: expected an integer >= 1")
        self._writer_class = SummaryWriter
        self.log_dir = Path(log_dir) / run_name if run_name else Path(log_dir)
        self.run_name = run_name
        self.flush_secs = flush_secs
        self.writer = None
        self._written = 0  # rows of trainer.history already written

    def __repr__(self) -> str:
        return f"TensorBoardLogger({str(self.log_dir)!r})"

    # -- hooks --------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.rank != 0:
            return
        self._close()
        # The History's rows up to trainer.step were written by the run (or the
        # fit) that recorded them; a resumed run writes from step + 1 on.
        purge_step = trainer.step + 1 if trainer.step > 0 else None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = self._writer_class(str(self.log_dir), purge_step=purge_step, flush_secs=self.flush_secs)
        self._written = len(trainer.history)

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._write_new_rows(trainer)

    def on_validation_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._write_new_rows(trainer)

    def on_checkpoint(self, trainer: Trainer) -> None:
        self._write_new_rows(trainer)
        if self.writer is not None:
            self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self._write_new_rows(trainer)
        self._close()

    # -- writing ------------------------------------------------------------------

    def _write_new_rows(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        rows = trainer.history.rows
        for row in rows[self._written :]:
            step = int(row["step"])
            for key, value in row.items():
                if key in AXES:
                    continue
                number = _scalar(value)
                if number is not None:  # nan and inf too: a diverged run shows as one
                    self.writer.add_scalar(key, number, global_step=step)
        self._written = len(rows)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
