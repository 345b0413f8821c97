"""``mnist-cnn``: real MNIST, read from the four IDX files in a data directory.

Nothing is downloaded: the user points ``data_dir`` (``--data-dir``) at a
directory holding the standard files, each optionally gzip-compressed::

    train-images-idx3-ubyte  train-labels-idx1-ubyte
    t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte

10% of the training images (seeded) are held out for validation; the test set
is the t10k set. Pixels are scaled to [0, 1] and standardised with the train
split's scalar mean and std (about 0.13 and 0.31 on MNIST).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import data
from .assemble import classification
from .base import Workload
from .idx import IdxError, read_idx
from .models import ConvNet2d
from .recipes import lr_defaults, recipe
from .registry import register

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_EXPECTED = ", ".join(FILES.values()) + " (each optionally .gz)"


def _missing(data_dir, problem: str) -> ValueError:
    return ValueError(f"mnist-cnn: {problem}; it needs the MNIST IDX files {_EXPECTED} in {data_dir}")


def find_files(data_dir: str | os.PathLike | None) -> dict[str, Path]:
    """The paths of the four IDX files in ``data_dir`` (plain preferred over .gz);
    ValueError naming the directory and the expected files if any is missing."""
    if data_dir is None:
        raise ValueError(
            f"mnist-cnn needs data_dir (--data-dir): a directory with the MNIST IDX files {_EXPECTED}"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise _missing(root, f"data directory {root} does not exist")
    found, absent = {}, []
    for key, name in FILES.items():
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            absent.append(name)
    if absent:
        raise _missing(root, f"missing {', '.join(absent)}")
    return found


def read_mnist(data_dir: str | os.PathLike | None) -> dict[str, np.ndarray]:
    """The four MNIST arrays from ``data_dir``, validated: uint8 images
    ``(n, rows, cols)`` and labels ``(n,)`` in 0..9, counts equal per set, one
    image size for both sets. Any problem is a ValueError naming the file."""
    paths = find_files(data_dir)
    try:
        arrays = {key: read_idx(path, dtype=0x08, ndim=3 if key.endswith("images") else 1)
                  for key, path in paths.items()}
    except IdxError as exc:
        raise _missing(Path(data_dir), f"invalid IDX file: {exc}") from None
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise _missing(Path(data_dir), f"{paths[f'{split}_images'].name} has {len(images)} images "
                                           f"but {paths[f'{split}_labels'].name} has {len(labels)} labels")
        if len(labels) == 0:
            raise _missing(Path(data_dir), f"{paths[f'{split}_images'].name} holds no images")
        if labels.max() > 9:
            raise _missing(Path(data_dir), f"{paths[f'{split}_labels'].name} has label {labels.max()}, "
                                           f"expected digits 0..9")
    train_size, test_size = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_size != test_size:
        raise _missing(Path(data_dir), f"train images are {train_size} but test images {test_size}")
    if min(train_size) < 4:
        raise _missing(Path(data_dir), f"images of {train_size[0]}x{train_size[1]} are too small (at least 4x4)")
    if len(arrays["train_labels"]) < 2:
        raise _missing(Path(data_dir), "the training set needs at least 2 images (one is held out for val)")
    return arrays


@register("mnist-cnn", "MNIST from IDX files in --data-dir (60000/10000 28x28), small CNN", needs_data_dir=True)
def mnist_cnn(seed: int, data_dir=None) -> Workload:
    """Real MNIST (LeCun et al. 1998) from ``data_dir``; a two-block CNN
    (16 and 32 channels, 3×3, max-pool) with a linear head."""
    arrays = read_mnist(data_dir)
    x, y = arrays["train_images"], arrays["train_labels"]
    rows, cols = x.shape[1:]
    train, val = data.train_val(len(y), seed)
    xs = data.standardize(x[train] / 255.0, x[val] / 255.0, arrays["test_images"] / 255.0, per_feature=False)
    ys = (y[train], y[val], arrays["test_labels"])
    splits = [(data.as_inputs(a[:, None]), data.as_labels(b)) for a, b in zip(xs, ys)]
    return classification(
        "mnist-cnn", f"MNIST ({len(y)}/{len(ys[2])} {rows}x{cols} images), CNN of 2 conv blocks (16/32 channels)",
        train=splits[0], val=splits[1], test=splits[2],
        make_model=lambda: ConvNet2d(rows, cols),
        num_classes=10,
        recipe=recipe("adam", 1e-3, batch_size=128, epochs=3),
        lr_defaults=lr_defaults(adam=1e-3, momentum=0.02),
        seed=seed,
        info={
            "source": f"IDX files in {Path(data_dir).expanduser()}",
            "preprocessing": "pixels / 255, standardised with the train split's scalar mean and std; (N, 1, H, W)",
            "sizes": {"train": len(train), "val": len(val), "test": len(ys[2])},
        },
    )
