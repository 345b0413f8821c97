"""Mini-batches over a pair of tensors, reshuffled reproducibly every epoch.

A torch ``DataLoader`` over a ``TensorDataset`` indexes and collates one
sample at a time; for the small in-memory workloads here that costs more than
the model. :class:`Batches` slices the tensors directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One independent stream per (seed, epoch): epoch e's order does not depend
    # on how many epochs ran before, so a resumed run sees the same order.
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class Batches:
    """Re-iterable ``(x, y)`` batches of one split.

    Args:
        x, y: tensors with the same first dimension.
        batch_size: a positive int, or ``"full"`` (or None) for one batch of everything.
        shuffle: draw a new permutation every epoch (seeded by ``(seed, epoch)``).
        seed: the shuffle seed.
        drop_last: skip a final batch smaller than ``batch_size``.

    Each ``iter()`` is one epoch and advances :attr:`epoch`; ``set_epoch(e)``
    makes the next iteration epoch ``e``.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int | str | None = "full",
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        n = len(x)
        if batch_size is None or batch_size == "full":
            size = max(n, 1)
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or 'full', got {batch_size!r}")
        else:
            size = batch_size
        self.x, self.y = x, y
        self.batch_size = size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1  # advance now, not at the first next()
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        n, size = len(self.x), self.batch_size
        order = torch.randperm(n, generator=_epoch_generator(self.seed, epoch)) if self.shuffle else None
        for start in range(0, len(self) * size, size):
            if order is None:
                yield self.x[start:start + size], self.y[start:start + size]
            else:
                index = order[start:start + size]
                yield self.x[index], self.y[index]
