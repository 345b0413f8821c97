"""Batches for the trainer, in an order that can be resumed mid-epoch.

Batch, stochastic and mini-batch gradient descent differ only in the batch:
``batch_size="full"`` (one batch per epoch: batch gradient descent), ``1``
(stochastic), or ``N`` (mini-batch).

When the trainer is given tensors ``(x, y)`` it batches them itself: the order
of epoch ``e`` is ``randperm(n)`` from a generator seeded with ``(seed, e)``, a
pure function of the two, so a resumed run sees exactly the batches the
interrupted one would have seen. A map-style ``Dataset`` (items that are
tuples or dicts) is batched the same way: the same seeded permutation of its
indices, cut into batches, loaded by a ``DataLoader`` (``num_workers``
processes allowed) with torch's default collation; a resumed run starts at
the batch it stopped before, without loading the ones already seen. Any other
iterable of batches (a DataLoader) is used as given; a resumed run then skips
the batches already seen in the epoch, which is exact when the loader's order
is deterministic per epoch.

Data parallel (``parts(epoch, start, rank, world)``): every process draws the
same seeded order and cuts the same global batches, and process ``rank`` reads
only rows ``rank::world`` of each — for tensors it indexes only those rows, for
a Dataset its DataLoader loads only those items — with their share of the
global batch, so that the averaged gradient is the global batch's (the
semantics of one process with the same batch size). A process left without
rows (a last batch smaller than ``world``) takes one row with share 0. A
loader of the user's is read whole and sliced the same way, unless its sampler
is a ``DistributedSampler``, which has sharded it already (equal shares).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..workloads.data import is_map_dataset  # noqa: F401  (what a Dataset is: the workloads' notion)

BatchSize = int | str


def check_batch_size(batch_size: Any) -> BatchSize:
    if batch_size == "full":
        return batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"invalid batch_size={batch_size!r}: expected an integer >= 1 or 'full'")
    return batch_size


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors ``(x, y)``."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: BatchSize, *, seed: int = 0, shuffle: bool = True):
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} and {len(y)}")
        if len(x) == 0:
            raise ValueError("the training data is empty")
        self.x, self.y = x, y
        self.batch_size = len(x) if check_batch_size(batch_size) == "full" else min(batch_size, len(x))
        self.seed, self.shuffle = seed, shuffle

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def order(self, epoch: int) -> Tensor:
        if not self.shuffle or self.batch_size == len(self.x):
            return torch.arange(len(self.x))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.x), generator=g)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of ``epoch`` from batch index ``start`` on."""
        if self.batch_size == len(self.x):  # full batch: no indexing copy
            if start == 0:
                yield self.x, self.y
            return
        idx = self.order(epoch)
        for b in range(start, len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[sel], self.y[sel]

    def parts(self, epoch: int, start: int, rank: int, world: int) -> Iterator[tuple[tuple[Tensor, Tensor], float]]:
        """This process's rows of each global batch of ``epoch``, with their share (see the module docstring)."""
        idx = self.order(epoch)
        for b in range(start, len(self)):
            sel, share = shard(idx[b * self.batch_size : (b + 1) * self.batch_size], rank, world)
            yield (self.x[sel], self.y[sel]), share


def shard(indices: Tensor | list[int], rank: int, world: int) -> tuple[Any, float]:
    """Rows ``rank::world`` of one global batch of indices, and their share of it."""
    n = len(indices)
    mine = indices[rank::world]
    if len(mine) == 0:
        return indices[:1], 0.0
    return mine, len(mine) / n


class _Indices(torch.utils.data.Sampler):
    """The batches of indices of one epoch from one batch on (set before each epoch)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class DatasetBatches:
    """Seeded, resumable mini-batches of a map-style dataset, through a DataLoader."""

    def __init__(self, dataset: Any, batch_size: BatchSize, *, seed: int = 0, shuffle: bool = True,
                 num_workers: int = 0):
        n = len(dataset)
        if n == 0:
            raise ValueError("the training data is empty")
        self.n = n
        self.batch_size = n if check_batch_size(batch_size) == "full" else min(batch_size, n)
        self.seed, self.shuffle = seed, shuffle
        self.sampler = _Indices()
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=num_workers,
            persistent_workers=num_workers > 0,  # the sampler is read in this process each epoch
        )

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def order(self, epoch: int) -> Tensor:
        if not self.shuffle or self.batch_size == self.n:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # as TensorBatches: same order
        return torch.randperm(self.n, generator=g)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        idx = self.order(epoch).tolist()
        self.sampler.batches = [idx[b * self.batch_size:(b + 1) * self.batch_size] for b in range(start, len(self))]
        yield from self.loader

    def parts(self, epoch: int, start: int, rank: int, world: int) -> Iterator[tuple[Any, float]]:
        """This process's items of each global batch (only those are loaded), with their share."""
        idx = self.order(epoch).tolist()
        cut = [shard(idx[b * self.batch_size:(b + 1) * self.batch_size], rank, world) for b in range(start, len(self))]
        self.sampler.batches = [sel for sel, _ in cut]
        yield from zip(self.loader, (share for _, share in cut))


def eval_loader(dataset: Any, batch_size: int, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A dataset in order, in batches, for evaluation."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


class IterableBatches:
    """Batches from any re-iterable source (e.g. a DataLoader)."""

    def __init__(self, source: Iterable[Any]):
        self.source = source

    def __len__(self) -> int:
        try:
            return len(self.source)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("the training data has no length: pass max_steps=") from None

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        sampler = getattr(self.source, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for i, batch in enumerate(self.source):
            if i >= start:
                yield batch

    def parts(self, epoch: int, start: int, rank: int, world: int) -> Iterator[tuple[Any, float]]:
        """Each batch whole when one process trains, else this process's rows of it, with their share."""
        from .batch import rows_of

        sharded = isinstance(getattr(self.source, "sampler", None), torch.utils.data.DistributedSampler)
        for batch in self.epoch(epoch, start):
            if world == 1:
                yield batch, 1.0
            elif sharded:  # the loader gives this process its own batch already
                yield batch, 1.0 / world
            else:
                yield rows_of(batch, rank, world)


def as_batches(data: Any, batch_size: BatchSize | None, seed: int,
               num_workers: int = 0) -> TensorBatches | DatasetBatches | IterableBatches:
    """Tensors ``(x, y)`` (or a TensorDataset) and map-style datasets are batched
    by us; anything else (a DataLoader, a list of batches) is used as given."""
    if isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) == 2:
        data = data.tensors
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return TensorBatches(data[0], data[1], batch_size if batch_size is not None else 32, seed=seed)
    if is_map_dataset(data):
        return DatasetBatches(data, batch_size if batch_size is not None else 32, seed=seed, num_workers=num_workers)
    if batch_size not in (None,):
        raise ValueError(
            f"batch_size={batch_size!r} applies to tensors (x, y); this data is already batched "
            f"({type(data).__name__}): set the batch size on the loader"
        )
    return IterableBatches(data)
