import pytest
import torch

from descentlab import workloads
from descentlab.workloads import Batches


def data(n=10):
    return torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n)


def test_batches_cover_the_split_once_per_epoch():
    x, y = data(10)
    b = Batches(x, y, 4, shuffle=True, seed=0)
    assert len(b) == 3
    epochs = [torch.cat([yb for _, yb in b]) for _ in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled every epoch
    for xb, yb in b:
        assert torch.equal(xb[:, 0].long(), yb)  # inputs stay paired with targets


def test_order_is_reproducible_and_resumable():
    x, y = data(50)
    a = Batches(x, y, 8, shuffle=True, seed=3)
    first = [[yb.tolist() for _, yb in a] for _ in range(3)]
    b = Batches(x, y, 8, shuffle=True, seed=3)
    b.set_epoch(2)
    assert [yb.tolist() for _, yb in b] == first[2]
    c = Batches(x, y, 8, shuffle=True, seed=4)
    assert [yb.tolist() for _, yb in c] != first[0]


def test_full_batch_no_shuffle_and_drop_last():
    x, y = data(10)
    (xb, yb), = list(Batches(x, y, "full"))
    assert torch.equal(yb, y)
    assert [len(yb) for _, yb in Batches(x, y, 4, drop_last=True)] == [4, 4]
    assert [yb.tolist() for _, yb in Batches(x, y, 4)][-1] == [8, 9]


@pytest.mark.parametrize("size", [0, -1, 2.5, "half", True])
def test_invalid_batch_size(size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer or 'full'"):
        Batches(*data(), size)


def test_workload_batches_defaults():
    w = workloads.load("linreg")
    train = w.batches()
    assert train.batch_size == w.recipe["batch_size"] and train.shuffle
    test = w.batches("test", "full")
    assert not test.shuffle and len(test) == 1
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        w.batches("dev")
