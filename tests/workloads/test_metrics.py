import math

import pytest
import torch
from sklearn.metrics import r2_score

from descentlab import workloads
from descentlab.workloads.metrics import accuracy, mse, r2


def test_accuracy_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    assert accuracy(logits, labels) == pytest.approx(0.5)


def test_r2_and_mse_by_hand():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y_hat = torch.tensor([1.0, 2.0, 4.0, 3.0])
    # SSE = 2, SST = 5 -> R² = 1 - 2/5
    assert r2(y_hat, y) == pytest.approx(0.6)
    assert r2(y_hat[:, None], y) == pytest.approx(0.6)  # (N, 1) outputs are accepted
    assert r2(y_hat, y) == pytest.approx(r2_score(y.numpy(), y_hat.numpy()))
    assert mse(y_hat, y) == pytest.approx(0.5)
    assert r2(y, y) == 1.0
    assert r2(torch.full((4,), 2.5), y) == pytest.approx(0.0)  # predicting the mean


def test_r2_constant_targets_follows_sklearn():
    y = torch.ones(3)
    assert r2(y, y) == 1.0
    assert r2(torch.zeros(3), y) == 0.0


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="accuracy expects targets"):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="same number of elements"):
        r2(torch.zeros(3), torch.zeros(4))


def test_metric_fields_and_target_range():
    w = workloads.load("linreg")
    assert (w.metric, w.metric_mode, w.metric_range) == ("r2", "max", (-math.inf, 1.0))
    assert w.check_target(0.9) == 0.9 and w.check_target(-5) == -5.0
    with pytest.raises(ValueError, match=r"outside the range of r2 on linreg: \[-inf, 1\]"):
        w.check_target(1.5)
    d = workloads.load("digits-mlp")
    assert (d.metric, d.metric_mode, d.metric_range) == ("accuracy", "max", (0.0, 1.0))
    for bad in (1.2, -0.1, float("nan"), "high"):
        with pytest.raises(ValueError):
            d.check_target(bad)
    assert d.reached(0.95, 0.9) and not d.reached(0.85, 0.9)
    assert d.is_better(0.9, 0.8) and not d.is_better(0.8, 0.8)
