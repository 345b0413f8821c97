"""scikit-learn's digits for the ``families`` workloads: a split with larger held-out parts.

The built-in ``digits-mlp``/``digits-cnn`` hold out 20% for test and 10% of the rest for
validation (144 images: one image is 0.7% of accuracy). The families workloads
(``digits-resnet``, ``digits-vit``, ``digits-unet``) split 50/25/25 instead: 899 train,
449 validation and 449 test images, seeded and not stratified (the ten classes have
174-183 images each in the source; in a part each class holds 7-13% of the images).
"""

from __future__ import annotations

import numpy as np

from .. import data

SPLIT = (0.50, 0.25, 0.25)
"""train, val, test shares of the 1797 images."""


def load() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: float64 (1797, 8, 8) pixel intensities 0..16, int labels 0..9."""
    try:
        from sklearn import datasets
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the digits workloads need scikit-learn: pip install scikit-learn") from exc
    ds = datasets.load_digits()
    return ds.images.astype(np.float64), ds.target.astype(np.int64)


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded ``(train, val, test)`` index arrays of :data:`SPLIT` (each sorted)."""
    n_val = round(n * SPLIT[1])
    n_test = round(n * SPLIT[2])
    test, val, train = data.split_indices(n, (n_test, n_val), seed, purpose="families digits split")
    return train, val, test


def image_splits(seed: int) -> list[tuple]:
    """The classification splits ``[(x, y)] * 3`` (train, val, test): images as float32
    (N, 1, 8, 8) standardised with the train split's statistics, int64 labels."""
    images, labels = load()
    train, val, test = split(len(labels), seed)
    xs = data.standardize(images[train], images[val], images[test], per_feature=False)
    return [(data.as_inputs(a.reshape(-1, 1, 8, 8)), data.as_labels(labels[i])) for a, i in zip(xs, (train, val, test))]


SOURCE = "sklearn.datasets.load_digits (bundled; the UCI optical digits test set, 1797 8x8 images)"
