"""Seeded splits and train-statistics standardisation, shared by the workloads.

Every random choice draws from a local ``numpy.random.Generator`` built from
``(seed, purpose)``, never from a global generator: the same seed gives the same
data on every run and machine, and nothing outside the workload is disturbed.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

VAL_FRACTION = 0.1
"""Share of the training pool held out for validation by every workload."""

TEST_FRACTION = 0.2
"""Share held out for testing where a data set has no test split of its own."""


def rng(seed: int, purpose: str) -> np.random.Generator:
    """An independent generator for one purpose ("split", "data", ...) of one seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(purpose.encode())]))


def holdout_count(n: int, fraction: float) -> int:
    """How many of ``n`` items a ``fraction`` holds out: at least 1, leaving at least 1."""
    if n < 2:
        raise ValueError(f"cannot split {n} example(s) into two non-empty parts")
    return min(max(1, round(n * fraction)), n - 1)


def split_indices(n: int, sizes: tuple[int, ...], seed: int, purpose: str = "split") -> list[np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into parts of ``sizes`` plus the rest.

    Each part is sorted, so it keeps the source order.
    """
    if sum(sizes) >= n:
        raise ValueError(f"cannot hold out {sum(sizes)} of {n} examples and keep any for training")
    order = rng(seed, purpose).permutation(n)
    bounds = np.cumsum((0, *sizes))
    parts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])] + [order[bounds[-1]:]]
    return [np.sort(p) for p in parts]


def train_val_test(n: int, seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, ...]:
    """Seeded ``(train, val, test)`` indices for a data set without a test split:
    ``test_fraction`` of all for test, then :data:`VAL_FRACTION` of the rest for val."""
    n_test = holdout_count(n, test_fraction)
    n_val = holdout_count(n - n_test, VAL_FRACTION)
    test, val, train = split_indices(n, (n_test, n_val), seed)
    return train, val, test


def train_val(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(train, val)`` indices: :data:`VAL_FRACTION` of a training set held out."""
    val, train = split_indices(n, (holdout_count(n, VAL_FRACTION),), seed)
    return train, val


def standardize(train: np.ndarray, *others: np.ndarray, per_feature: bool) -> list[np.ndarray]:
    """``(a − mean) / std`` with the mean and std of ``train`` only.

    ``per_feature=True`` uses one mean and std per column (tabular data);
    ``False`` one scalar pair for all values (signals and images, whose
    positions share one scale). A zero std is treated as 1.
    """
    axis = 0 if per_feature else None
    mean = train.mean(axis=axis, dtype=np.float64)
    std = train.std(axis=axis, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def as_inputs(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def as_labels(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def is_map_dataset(data: Any) -> bool:
    """A map-style dataset: a torch ``Dataset`` (not iterable-style, not a
    TensorDataset's tensors), or any object with ``__getitem__`` and ``__len__``
    that is not a plain container or a tensor (e.g. a Hugging Face ``datasets.Dataset``)."""
    if isinstance(data, torch.utils.data.IterableDataset) or isinstance(data, (Tensor, tuple, list, dict, str)):
        return False
    if isinstance(data, torch.utils.data.DataLoader):
        return False
    return isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))
