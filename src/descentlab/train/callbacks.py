"""Callbacks: everything around the training loop.

A callback overrides any of the hooks below; ``state_dict()`` /
``load_state_dict()`` carry whatever it must remember across a resume (early
stopping's patience counter, say). Hooks receive the Trainer.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..optim import sharded

#: the :class:`~descentlab.train.trainer.Trainer` as the hooks receive it. Not imported:
#: the trainer runs its callbacks, so the dependency goes from the trainer to this module
#: (docs/architecture.md), and a hook reads the trainer's public attributes by name.
Trainer = Any


class Callback:
    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_before_step(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...
    def on_validation_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer: Trainer) -> None: ...
    def on_checkpoint(self, trainer: Trainer) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` validations; with ``restore_best`` the best weights are put back
    whatever ends training (early stop, the epoch or step budget, an error).

    It configures the trainer's shared best record, so the best checkpoint and
    the restored weights are the same model. ``mode="auto"``: "max" for
    accuracy-like names, else "min".
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"invalid patience={patience!r}: expected an integer >= 1")
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "r2", "auc", "f1")) else "min"
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode, self.restore_best = mode, restore_best
        self.wait = 0
        self.stopped_step: int | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        trainer.best.configure(self.monitor, self.mode, self.min_delta)

    def on_validation_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.best.step == trainer.step:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.should_stop = True
            trainer.stop_reason = "early_stopping"
            self.stopped_step = trainer.step

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best:
            trainer.restore_best()

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "stopped_step": self.stopped_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.stopped_step = state["wait"], state["stopped_step"]


class Diagnostics(Callback):
    """Every ``every`` steps, log the global gradient norm and, per parameter
    tensor, the update/weight ratio ‖Δp‖/‖p‖ (Karpathy's rule of thumb: about
    1e-3 is healthy; much larger means too high a learning rate)."""

    def __init__(self, every: int = 50):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"invalid every={every!r}: expected an integer >= 1")
        self.every = every
        self._before: dict[str, torch.Tensor] | None = None
        self._grad_norm: float | None = None

    def on_before_step(self, trainer: Trainer) -> None:
        if (trainer.step + 1) % self.every:
            return
        named = [(n, p) for n, p in trainer.model.named_parameters() if p.grad is not None]
        # sharded.norms: on FSDP2's DTensors, one all-reduce for all of them, not one
        # per tensor (DTensor.norm) — this callback ran every step of short runs.
        grads = sharded.norms([p.grad for _, p in named])
        self._grad_norm = float(torch.stack([g.double() for g in grads]).square().sum().sqrt()) if grads else 0.0
        self._before = {n: p.detach().clone() for n, p in named}

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self._before is None:
            return
        values: dict[str, float] = {"grad_norm": self._grad_norm}
        named = [(n, p.detach()) for n, p in trainer.model.named_parameters() if n in self._before]
        both = sharded.norms([p - self._before[n] for n, p in named] + [p for _, p in named])
        ratios = []
        if named:
            deltas, weights = torch.stack([n.double() for n in both]).chunk(2)
            for (name, _), ratio in zip(named, (deltas / weights.clamp_min(1e-12)).tolist()):
                values[f"update_ratio/{name}"] = ratio
                ratios.append(ratio)
        values["update_ratio"] = float(sum(ratios) / len(ratios)) if ratios else math.nan
        trainer.history.log(trainer.step, trainer.train_seconds, {"step": trainer.step, **values})
        self._before = None


class CsvLogger(Callback):
    """Writes the history to ``path`` (metrics.csv) at every checkpoint and at
    the end, so the file always matches what a resume restores."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_checkpoint(self, trainer: Trainer) -> None:
        trainer.history.to_csv(self.path)

    def on_fit_end(self, trainer: Trainer) -> None:
        if len(trainer.history):
            trainer.history.to_csv(self.path)


class ProgressBar(Callback):
    """One tqdm bar per epoch with the loss and lr; off when stdout is not a terminal."""

    def __init__(self, enabled: bool | None = None, every: int = 10):
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self.every = every
        self._bar = None

    def on_epoch_start(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        total = getattr(trainer, "steps_per_epoch", None)
        epochs = f"/{trainer.epochs}" if trainer.epochs else ""
        self._bar = tqdm(total=total, desc=f"epoch {trainer.epoch + 1}{epochs}", leave=False, dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self._bar is not None and trainer.step % self.every == 0:
            self._bar.update(self.every)
            self._bar.set_postfix(loss=f"{trainer.last_loss:.4g}", lr=f"{logs['lr']:.3g}", refresh=False)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, trainer: Trainer) -> None:
        self._close()

    def on_fit_end(self, trainer: Trainer) -> None:
        self._close()


class SameStart(Callback):
    """Checks that every rank starts (or resumes) at the same loop position."""

    def on_fit_start(self, trainer) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        here = torch.tensor([trainer.step, trainer.epoch, trainer.batch_in_epoch], device=trainer.device)
        everywhere = [torch.empty_like(here) for _ in range(dist.get_world_size())]
        dist.all_gather(everywhere, here)
        if any(not torch.equal(t, everywhere[0]) for t in everywhere):
            where = ", ".join(f"rank {r}: step {int(t[0])}" for r, t in enumerate(everywhere))
            raise RuntimeError(f"the processes resumed from different checkpoints ({where})")
