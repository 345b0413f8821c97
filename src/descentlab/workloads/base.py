"""The :class:`Workload` record: data splits, model factory, loss, metric, recipe."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .data import is_map_dataset

from .batches import Batches

Split = tuple[Tensor, Tensor]
"""``(inputs, targets)``: float32 inputs; int64 class labels or float32 regression targets."""

Data = Any
"""A split: a :data:`Split` of tensors, or a map-style ``torch.utils.data.Dataset``
whose items are tuples ``(x, y)`` or dicts (batched by descentlab)."""

TASKS = ("classification", "regression", "other")
SPLITS = ("train", "val", "test")

#: the recipe of a workload that does not give one: Adam at its usual 1e-3,
#: mini-batches of 32 (Keras' and Lightning's examples' default), 10 epochs.
DEFAULT_RECIPE = {
    "optimizer": "adam", "lr": 1e-3, "optimizer_kwargs": {}, "weight_decay": 0.0, "schedule": None,
    "schedule_kwargs": {}, "batch_size": 32, "epochs": 10, "steps": None,
}


def _default_lrs() -> dict[str, float]:
    from .recipes import lr_defaults

    return lr_defaults(adam=1e-3, momentum=0.01)


def num_examples(data: Data) -> int:
    """How many examples a split holds (tensors ``(x, y)`` or a Dataset)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return len(data[1])
    try:
        return len(data)
    except TypeError:
        raise ValueError(f"a split must have a length: tensors (x, y) or a map-style Dataset, got {type(data).__name__}") from None


@dataclass(frozen=True, eq=False, kw_only=True)  # eq would compare tensors
class Workload:
    """A training problem: data, model, loss and metric, with a default recipe.

    The minimal construction (every other field has a default)::

        Workload(name="my-problem", train=(x, y), val=(x, y), test=(x, y),
                 make_model=lambda: MyNet(), loss_fn=torch.nn.CrossEntropyLoss(), metric="accuracy")

    Attributes:
        name: the name shown in summaries and reports.
        train, val, test: ``(x, y)`` tensor pairs, or map-style
            ``torch.utils.data.Dataset`` objects whose items are tuples
            ``(x, y)`` or dicts (Hugging Face style), batched by descentlab in a
            seeded, resumable order. For the built-ins ``x`` is float32 and
            ``y`` int64 labels (classification) or float32 targets (regression).
        make_model: a fresh, untrained ``nn.Module`` on the CPU. Its
            initialisation draws from torch's global generator, so
            ``torch.manual_seed(s); w.make_model()`` is reproducible; the
            workload never seeds anything globally itself.
        loss_fn: the training loss, taking ``(outputs, targets)``; None when the
            model returns its own loss (``outputs.loss``, ``outputs["loss"]``,
            a tuple ``(logits, loss)`` or a 0-dim tensor), as Hugging Face
            models do when the batch holds ``labels``.
        metric: a built-in name (see :mod:`.metrics`: accuracy, r2, mse, loss,
            perplexity) or a callable ``metric(outputs, targets) -> float``
            over a whole split, whose direction ``metric_mode`` must then be given.
        metric_fn, metric_mode, metric_range: derived from a built-in
            ``metric``; ``metric_mode`` is ``"max"`` (higher is better) or
            ``"min"``; ``metric_range`` is the closed range a target may be
            chosen from (see :meth:`check_target`).
        description: one line for listings.
        task: ``"classification"``, ``"regression"`` or ``"other"`` (default:
            from the metric).
        target_key: for dict batches, the key of the targets (default: the
            first of ``labels, label, targets, target, y`` present).
        num_workers: DataLoader worker processes for Dataset splits (0: load
            in the training process).
        param_groups: ``param_groups(optimizer_name, model)`` -> the params or
            param groups that optimizer gets (e.g. :func:`descentlab.optim.muon_groups`
            for "muon"); None: ``model.parameters()`` for every optimizer.
        recipe: the default training recipe, a plain dict with the keys
            ``optimizer, lr, optimizer_kwargs, weight_decay, schedule,
            schedule_kwargs, batch_size, epochs, steps`` (exactly one of
            ``epochs`` and ``steps`` is set, the other is None; ``batch_size``
            is an int or ``"full"``). Keys left out take
            :data:`DEFAULT_RECIPE`'s values. ``descentlab train --workload W`` runs it.
        lr_defaults: the default learning rate of each named optimizer on this
            workload (see :mod:`.recipes`; default: the table's ratios to
            Adam's 1e-3 and momentum SGD's 0.01).
        num_classes: number of classes (None for regression).
        seed: the seed the data were split (and, for synthetic data, drawn) with.
        info: provenance: data source, preprocessing, split sizes, published
            reference figures.
    """

    name: str
    train: Data
    val: Data
    test: Data
    make_model: Callable[[], nn.Module]
    loss_fn: Callable[[Any, Any], Tensor] | None = None
    metric: str | Callable[[Any, Any], float] = "loss"
    metric_fn: Callable[[Any, Any], float] | None = None
    metric_mode: str | None = None
    metric_range: tuple[float, float] | None = None
    description: str = ""
    task: str | None = None
    target_key: str | None = None
    num_workers: int = 0
    param_groups: Callable[[str, nn.Module], Any] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    lr_defaults: Mapping[str, float] = field(default_factory=_default_lrs)
    num_classes: int | None = None
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .metrics import resolve_metric

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a workload's name must be a non-empty string, got {self.name!r}")
        if not callable(self.make_model):
            raise TypeError(f"{self.name}: make_model must be a callable that returns an nn.Module, got {self.make_model!r}")
        if self.loss_fn is not None and not callable(self.loss_fn):
            raise TypeError(f"{self.name}: loss_fn must be callable (outputs, targets) -> loss, or None, got {self.loss_fn!r}")
        m = resolve_metric(self.metric, self.metric_fn, self.metric_mode, self.metric_range, where=self.name)
        set_ = object.__setattr__  # frozen: fill the derived fields once
        set_(self, "metric", m.name)
        set_(self, "metric_fn", m.fn)
        set_(self, "metric_mode", m.mode)
        set_(self, "metric_range", m.range)
        if self.task is None:
            set_(self, "task", {"accuracy": "classification", "r2": "regression", "mse": "regression"}.get(m.name, "other"))
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"{self.name}: num_workers must be an integer >= 0, got {self.num_workers!r}")
        if not isinstance(self.recipe, Mapping):
            raise TypeError(f"{self.name}: recipe must be a mapping, got {self.recipe!r}")
        unknown = sorted(set(self.recipe) - set(DEFAULT_RECIPE))
        if unknown:
            raise ValueError(f"{self.name}: unknown recipe key(s) {unknown}; expected {', '.join(DEFAULT_RECIPE)}")
        recipe = {**DEFAULT_RECIPE, **self.recipe}
        if "steps" in self.recipe and "epochs" not in self.recipe and self.recipe["steps"] is not None:
            recipe["epochs"] = None  # a recipe that gives steps means steps
        set_(self, "recipe", recipe)
        set_(self, "lr_defaults", dict(self.lr_defaults))
        for split in SPLITS:
            data = getattr(self, split)
            if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
                x, y = data
                if len(x) != len(y):
                    raise ValueError(f"{self.name}: {split} has {len(x)} inputs but {len(y)} targets")
            elif not is_map_dataset(data):
                raise TypeError(
                    f"{self.name}: {split} must be tensors (x, y) or a map-style torch.utils.data.Dataset, "
                    f"got {type(data).__name__}"
                )
            num_examples(data)

    def num_examples(self, split: str = "train") -> int:
        """How many examples ``split`` holds."""
        return num_examples(self.split(split))

    @property
    def tensors(self) -> bool:
        """Whether every split is in-memory tensors ``(x, y)``."""
        return all(isinstance(getattr(self, s), (tuple, list)) for s in SPLITS)

    def split(self, name: str) -> Data:
        """The data (``(x, y)`` tensors or a Dataset) of ``"train"``, ``"val"`` or ``"test"``."""
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
        data = self.split(split)
        if not isinstance(data, (tuple, list)):
            raise ValueError(f"{self.name}: batches() slices tensor splits; {split} is a "
                             f"{type(data).__name__}, which the Trainer batches itself")
        x, y = data
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
        sizes = ", ".join(f"{s}={num_examples(getattr(self, s))}" for s in SPLITS)
        return f"Workload({self.name!r}, {self.task}, {sizes}, metric={self.metric!r}, seed={self.seed})"
