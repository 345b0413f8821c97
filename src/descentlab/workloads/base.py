"""The :class:`Workload` record: data splits, model factory, loss, metric, recipe."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .batches import Batches

Split = tuple[Tensor, Tensor]
"""``(inputs, targets)``: float32 inputs; int64 class labels or float32 regression targets."""

TASKS = ("classification", "regression")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)  # eq would compare tensors
class Workload:
    """A training problem: data, model, loss and metric, with a default recipe.

    Attributes:
        name: the registry name (``workloads.load(name)``).
        description: one line for ``descentlab list workloads``.
        task: ``"classification"`` or ``"regression"``.
        train, val, test: ``(x, y)`` tensor pairs. ``x`` is float32; ``y`` is
            int64 class labels of shape ``(N,)`` for classification and float32
            targets of shape ``(N,)`` for regression (the model emits ``(N,)``).
        make_model: a fresh, untrained ``nn.Module`` on the CPU. Its
            initialisation draws from torch's global generator, so
            ``torch.manual_seed(s); w.make_model()`` is reproducible; the
            workload never seeds anything globally itself.
        loss_fn: the training loss, an ``nn.Module`` taking ``(outputs, targets)``.
        metric: the evaluation metric's name (see :mod:`.metrics`).
        metric_fn: ``metric_fn(outputs, targets) -> float`` over a whole split.
        metric_mode: ``"max"`` (higher is better) or ``"min"``.
        metric_range: the closed range of the metric's values, e.g. ``(0.0, 1.0)``
            for accuracy and ``(-inf, 1.0)`` for R²; see :meth:`check_target`.
        recipe: the default training recipe, a plain dict with the keys
            ``optimizer, lr, optimizer_kwargs, weight_decay, schedule,
            schedule_kwargs, batch_size, epochs, steps`` (exactly one of
            ``epochs`` and ``steps`` is set, the other is None; ``batch_size``
            is an int or ``"full"``; a schedule's ``total_steps`` matches the
            run's length in optimizer steps, so a caller who changes the length
            should change it too). ``descentlab train --workload W`` runs it.
        lr_defaults: the documented default learning rate of each named
            optimizer on this workload (see :mod:`.recipes`).
        num_classes: number of classes (None for regression).
        seed: the seed the data were split (and, for synthetic data, drawn) with.
        info: provenance: data source, preprocessing, split sizes, published
            reference figures.
    """

    name: str
    description: str
    task: str
    train: Split
    val: Split
    test: Split
    make_model: Callable[[], nn.Module]
    loss_fn: nn.Module
    metric: str
    metric_fn: Callable[[Tensor, Tensor], float]
    metric_mode: str
    metric_range: tuple[float, float]
    recipe: dict[str, Any]
    lr_defaults: Mapping[str, float] = field(default_factory=dict)
    num_classes: int | None = None
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.metric_mode not in ("max", "min"):
            raise ValueError(f"metric_mode must be 'max' or 'min', got {self.metric_mode!r}")
        for split in SPLITS:
            x, y = getattr(self, split)
            if len(x) != len(y):
                raise ValueError(f"{self.name}: {split} has {len(x)} inputs but {len(y)} targets")

    def split(self, name: str) -> Split:
        """The ``(x, y)`` pair of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def batches(
        self,
        split: str = "train",
        batch_size: int | str | None = None,
        *,
        shuffle: bool | None = None,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> Batches:
        """Mini-batches of a split, an iterable the Trainer can take.

        ``batch_size`` defaults to the recipe's (``"full"``: the whole split as
        one batch, i.e. batch gradient descent; 1: stochastic gradient
        descent). The training split is reshuffled every epoch by default,
        from a generator seeded with ``(seed, epoch)``, so the order is
        reproducible and can be resumed with :meth:`Batches.set_epoch`.
        """
        x, y = self.split(split)
        size = self.recipe.get("batch_size", "full") if batch_size is None else batch_size
        shuffle = (split == "train") if shuffle is None else shuffle
        return Batches(x, y, size, shuffle=shuffle, seed=self.seed if seed is None else seed,
                       drop_last=drop_last)

    def default_lr(self, optimizer: str) -> float:
        """This workload's documented default learning rate for ``optimizer``."""
        key = optimizer.strip().lower().replace("-", "_")
        if key in self.lr_defaults:
            return self.lr_defaults[key]
        close = difflib.get_close_matches(key, list(self.lr_defaults), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"no default learning rate for optimizer {optimizer!r} on workload {self.name!r}{hint}")

    def check_target(self, target: float) -> float:
        """``target`` as a float if it lies in :attr:`metric_range`, else ValueError."""
        lo, hi = self.metric_range
        try:
            value = float(target)
        except (TypeError, ValueError):
            raise ValueError(f"target must be a number, got {target!r}") from None
        if math.isnan(value) or not lo <= value <= hi:
            raise ValueError(
                f"target {target!r} is outside the range of {self.metric} on {self.name}: "
                f"[{lo:g}, {hi:g}]"
            )
        return value

    def is_better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b``."""
        return a > b if self.metric_mode == "max" else a < b

    def reached(self, value: float, target: float) -> bool:
        """Whether metric value ``value`` meets ``target`` (≥ for "max", ≤ for "min")."""
        return value >= target if self.metric_mode == "max" else value <= target

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s)[0])}" for s in SPLITS)
        return f"Workload({self.name!r}, {self.task}, {sizes}, metric={self.metric!r}, seed={self.seed})"
