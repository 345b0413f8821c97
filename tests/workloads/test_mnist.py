import gzip

import numpy as np
import pytest
import torch

from descentlab import optim, workloads
from descentlab.workloads import write_idx
from descentlab.workloads.mnist import FILES

N_TRAIN, N_TEST = 20, 8


def write_mnist(directory, *, n_train=N_TRAIN, n_test=N_TEST, size=28, gz=(), seed=0):
    g = np.random.default_rng(seed)
    arrays = {
        "train_images": g.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": g.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for key, a in arrays.items():
        write_idx(directory / (FILES[key] + (".gz" if key in gz else "")), a)
    return arrays


def test_loads_idx_files(tmp_path):
    arrays = write_mnist(tmp_path, gz=("train_images",))
    w = workloads.load("mnist-cnn", seed=0, data_dir=tmp_path)
    assert [len(w.split(s)[0]) for s in workloads.SPLITS] == [18, 2, N_TEST]
    assert w.train[0].shape == (18, 1, 28, 28) and w.train[0].dtype == torch.float32
    assert w.train[1].dtype == torch.int64
    assert torch.equal(w.test[1], torch.from_numpy(arrays["test_labels"]).long())
    assert abs(w.train[0].mean().item()) < 1e-4 and abs(w.train[0].std().item() - 1) < 1e-2
    other = workloads.load("mnist-cnn", seed=1, data_dir=str(tmp_path))
    assert not torch.equal(w.val[1], other.val[1]) or not torch.equal(w.val[0], other.val[0])

    torch.manual_seed(0)
    model = w.make_model()
    opt = optim.create("adam", model.parameters(), lr=w.default_lr("adam"))
    x, y = w.train
    before = w.loss_fn(model(x), y).item()
    for _ in range(10):
        opt.zero_grad()
        w.loss_fn(model(x), y).backward()
        opt.step()
    assert w.loss_fn(model(x), y).item() < before


def test_small_images_get_a_matching_model(tmp_path):
    write_mnist(tmp_path, size=8)
    w = workloads.load("mnist-cnn", data_dir=tmp_path)
    assert w.make_model()(w.test[0]).shape == (N_TEST, 10)


def test_needs_data_dir():
    with pytest.raises(ValueError, match="mnist-cnn needs data_dir.*train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        workloads.load("mnist-cnn")


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(ValueError, match=f"data directory {tmp_path / 'nope'} does not exist"):
        workloads.load("mnist-cnn", data_dir=tmp_path / "nope")
    write_mnist(tmp_path)
    (tmp_path / FILES["test_labels"]).unlink()
    with pytest.raises(ValueError) as info:
        workloads.load("mnist-cnn", data_dir=tmp_path)
    message = str(info.value)
    assert "missing t10k-labels-idx1-ubyte" in message and str(tmp_path) in message
    for name in FILES.values():
        assert name in message
    assert ".gz" in message


def test_invalid_files_are_rejected_naming_the_file(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"invalid IDX file: {path}: truncated"):
        workloads.load("mnist-cnn", data_dir=tmp_path)
    write_mnist(tmp_path)
    labels = tmp_path / FILES["train_labels"]
    data = bytearray(labels.read_bytes())
    data[2] = 0x0C  # int32 labels
    labels.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="type byte is 0x0C, expected 0x08"):
        workloads.load("mnist-cnn", data_dir=tmp_path)
    labels.write_bytes(gzip.compress(b"not idx"))  # gzip content under a plain name
    with pytest.raises(ValueError, match="bad magic number"):
        workloads.load("mnist-cnn", data_dir=tmp_path)


def test_inconsistent_files(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / FILES["train_labels"], np.zeros(N_TRAIN - 1, dtype=np.uint8))
    with pytest.raises(ValueError, match="has 20 images but train-labels-idx1-ubyte has 19 labels"):
        workloads.load("mnist-cnn", data_dir=tmp_path)
    write_idx(tmp_path / FILES["train_labels"], np.full(N_TRAIN, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match="has label 10, expected digits 0..9"):
        workloads.load("mnist-cnn", data_dir=tmp_path)
    write_mnist(tmp_path)
    write_idx(tmp_path / FILES["test_images"], np.zeros((N_TEST, 27, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train images are \(28, 28\) but test images \(27, 28\)"):
        workloads.load("mnist-cnn", data_dir=tmp_path)
