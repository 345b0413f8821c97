"""Gradual pruning during training: Zhu & Gupta's cubic sparsity schedule.

Zhu & Gupta, "To prune, or not to prune" (2017, arXiv:1710.01878), eq. (1):
the sparsity at step t rises from s_i to s_f over n pruning steps Δt apart,
starting at step t0,

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n Δt))³,   t ∈ {t0, t0 + Δt, …, t0 + n Δt},

fast at first, when there are many redundant weights, and slowly towards the
end; between pruning steps the network trains (fine-tunes) with the masks
held, and after ``t0 + n Δt`` it trains on at s_f. :class:`GradualPruning` is
the Trainer callback: it prunes by magnitude (:func:`.magnitude.prune_magnitude`)
after the optimizer step of each pruning step, with the masks reaching the
optimizer, so pruned weights stay exactly zero in between and after.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import UsageError
from ..train.callbacks import Callback
from .magnitude import check_sparsity, make_permanent, prune_magnitude, sparsity_of


def cubic_sparsity(step: int, *, final: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's s_t: ``initial`` until ``start``, ``final`` from ``end`` on, the cubic between."""
    if end <= start:
        raise UsageError(f"invalid pruning window: end={end} must come after start={start}")
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


class GradualPruning(Callback):
    """Prune to ``sparsity`` gradually, every ``frequency`` steps from ``start`` to
    ``end`` (the cubic schedule), then train on at that sparsity.

    ``start``/``end`` are optimizer steps of this ``fit``; ``end`` defaults to
    3/4 of the run, leaving the last quarter to fine-tune at the final sparsity
    (Zhu & Gupta prune for most of the run and let the learning rate decay at
    the end). With ``permanent=True`` (the default) the re-parametrisation is
    removed at the end of training: the model has plain weights with zeros.
    The best-weights record of the Trainer is reset at each prune (a model
    saved before it would not load into the pruned one).
    """

    def __init__(self, sparsity: float, *, start: int = 0, end: int | None = None, frequency: int = 100,
                 initial: float = 0.0, scope: str = "global", ignore: Iterable[nn.Module | str] = (),
                 permanent: bool = True):
        self.sparsity = check_sparsity(sparsity)
        self.initial = check_sparsity(initial, "initial sparsity")
        for name, value in (("start", start), ("frequency", frequency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "frequency" else 0):
                raise UsageError(f"invalid {name}={value!r}: expected an integer >= {1 if name == 'frequency' else 0}")
        self.start, self.end, self.frequency = start, end, frequency
        self.scope, self.ignore, self.permanent = scope, list(ignore), permanent
        self.history: list[dict[str, Any]] = []

    def on_fit_start(self, trainer) -> None:
        if self.end is None:
            total = trainer.total_steps if math.isfinite(trainer.total_steps) else self.start + 10 * self.frequency
            self.end = max(self.start + 1, int(total * 3 // 4))
        if self.end <= self.start:
            raise UsageError(f"invalid pruning window: end={self.end} must come after start={self.start}")
        if self.start == 0:
            self._prune(trainer, 0)

    def target(self, step: int) -> float:
        return cubic_sparsity(step, final=self.sparsity, start=self.start, end=self.end, initial=self.initial)

    def on_step_end(self, trainer, logs: dict[str, Any]) -> None:
        step = trainer.step
        if step < self.start or step > self.end:
            return
        if (step - self.start) % self.frequency == 0 or step == self.end:
            self._prune(trainer, step)

    def _prune(self, trainer, step: int) -> None:
        target = self.target(step)
        if target <= 0 and not self.history:
            return
        if self.history and target <= self.history[-1]["sparsity"]:
            return
        prune_magnitude(trainer.model, target, scope=self.scope, optimizer=trainer.optimizer, ignore=self.ignore)
        trainer.best.reset()
        self.history.append({"step": step, "sparsity": sparsity_of(trainer.model, self.ignore), "target": target})

    def on_fit_end(self, trainer) -> None:
        if self.permanent:
            make_permanent(trainer.model)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
