"""The range test: it leaves model, optimizer, scaler, RNG and data order bitwise as
they were, reads its curves as documented, and refuses bad settings."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from descentlab import optim
from descentlab.train import Trainer
from descentlab.tune import lr_find, rules


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return x, y


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def _state(model, opt, scaler=None):
    """Everything lr_find promises to restore, as plain comparable values."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "training": [m.training for m in model.modules()],
        "opt": copy.deepcopy(opt.state_dict()),  # state_dict() shares the live state dicts
        "scaler": scaler.state_dict() if scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].copy(),
    }


def _assert_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"


def _train_a_little(model, opt, x, y, steps=3):
    loss_fn = nn.CrossEntropyLoss()
    for i in range(steps):
        loss_fn(model(x[i * 32:(i + 1) * 32]), y[i * 32:(i + 1) * 32]).backward()
        opt.step()
        opt.zero_grad()


#: optimizers that are not descentlab's: torch's, pytorch-optimizer's, a user's file
FOREIGN = ["torch.optim:AdamW", "pytorch_optimizer:ADOPT",
           f"{Path(__file__).parents[1] / 'optim' / 'user_optimizers.py'}:HeavyBall"]


@pytest.mark.parametrize("name", [*optim.available(), *FOREIGN])
def test_every_optimizer_state_is_bitwise_restored(name):
    x, y = _data()
    model = _model()
    opt = optim.create(name, model.parameters(), lr=1e-3)
    _train_a_little(model, opt, x, y)  # state exists: momentum, moments, step counts
    nn.CrossEntropyLoss()(model(x[:32]), y[:32]).backward()  # and a gradient waiting
    model.eval()  # a mode to restore
    random.random(), np.random.rand(), torch.rand(1)
    before = _state(model, opt)
    result = lr_find(model, opt, nn.CrossEntropyLoss(), (x, y), batch_size=32, num_steps=20, end_lr=1.0)
    assert math.isfinite(result.suggested_lr) and 0 < result.suggested_lr <= 1.0
    _assert_equal(before, _state(model, opt), name)


def test_tensor_lr_and_grad_scaler_and_data_loader_order_restored():
    x, y = _data()
    model = _model()
    opt = optim.create("adamw", model.parameters(), lr=torch.tensor(3e-3))
    _train_a_little(model, opt, x, y)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(5))
    before = _state(model, opt, scaler)
    gen_state = loader.generator.get_state()
    result = lr_find(model, opt, nn.CrossEntropyLoss(), loader, scaler=scaler, num_steps=15, end_lr=1.0)
    assert result.lrs[0] == pytest.approx(1e-7)
    _assert_equal(before, _state(model, opt, scaler))
    assert torch.equal(loader.generator.get_state(), gen_state)
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor) and float(opt.param_groups[0]["lr"]) == pytest.approx(3e-3)


def test_training_after_lr_find_equals_training_without_it():
    x, y = _data(seed=1)

    def run(with_find: bool):
        model = _model(seed=3)
        opt = optim.create("momentum", model.parameters(), lr=0.05)
        torch.manual_seed(11)
        if with_find:
            lr_find(model, opt, nn.CrossEntropyLoss(), (x, y), batch_size=32, num_steps=25, sweeps=2)
        trainer = Trainer(model, opt, nn.CrossEntropyLoss(), batch_size=32, seed=4, device="cpu")
        trainer.fit((x, y), max_steps=20)
        return {n: p.detach().clone() for n, p in model.named_parameters()}, torch.rand(3)

    (a, ra), (b, rb) = run(False), run(True)
    for n in a:
        assert torch.equal(a[n], b[n]), n
    assert torch.equal(ra, rb)  # the global RNG continued from the same state


def test_sweep_stops_at_divergence_and_reports_the_spread():
    x, y = _data()
    model = _model()
    opt = optim.create("sgd", model.parameters(), lr=0.1)
    result = lr_find(model, opt, nn.CrossEntropyLoss(), (x, y), batch_size=32, start_lr=1e-4, end_lr=1e4,
                     num_steps=60, sweeps=3)
    assert result.sweeps[0]["stop"] in ("diverged", "non-finite loss")
    assert len(result.lrs) < 60
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))  # exponential, increasing
    conf = result.confidence
    assert conf["sweeps"] == 3 and len(conf["suggestions"]) == 3
    assert conf["spread"] == pytest.approx(max(conf["suggestions"]) / min(conf["suggestions"]))
    assert result.suggested_lr == pytest.approx(rules.geometric_median(conf["suggestions"]))
    # the sweeps saw different data orders: their curves differ
    assert result.sweeps[0]["raw_losses"][:10] != result.sweeps[1]["raw_losses"][:10]


def test_per_group_sweeps_when_group_lrs_differ():
    x, y = _data()
    model = _model()
    opt = optim.create("adam", [{"params": model[0].parameters(), "lr": 1e-2},
                                {"params": list(model[1].parameters()) + list(model[4].parameters()), "lr": 1e-3}],
                       lr=1e-3)
    result = lr_find(model, opt, nn.CrossEntropyLoss(), (x, y), batch_size=32, num_steps=20)
    assert [g["index"] for g in result.groups] == [0, 1]
    assert result.settings["groups"] == "each"
    assert result.settings["primary_group"] == 1  # the group holding the optimizer's own lr
    assert result.suggested_lr == result.groups[1]["suggested_lr"]
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-3]

    together = lr_find(model, opt, nn.CrossEntropyLoss(), (x, y), batch_size=32, num_steps=20, groups="together")
    g0, g1 = together.groups
    assert g0["suggested_lr"] / g1["suggested_lr"] == pytest.approx(10.0)  # the ratio kept


def test_dict_batches_and_a_model_that_returns_its_own_loss():
    x, y = _data()

    class OwnLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(8, 3)

        def forward(self, inputs, labels):
            return {"loss": nn.functional.cross_entropy(self.net(inputs), labels)}

    batches = [{"inputs": x[i:i + 32], "labels": y[i:i + 32]} for i in range(0, 256, 32)]
    model = OwnLoss()
    opt = optim.create("adam", model.parameters(), lr=1e-3)
    result = lr_find(model, opt, None, batches, num_steps=30)  # 8 batches, cycled
    assert len(result.raw_losses) >= 10


def test_rules_on_a_known_curve():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]  # 1e-6 .. 1
    x = np.log10(lrs)
    # flat, falls (ever faster) from 1e-4 to its minimum at 1e-2, explodes after
    loss = np.where(x < -4, 2.0, np.where(x < -2, 2.0 - 0.25 * (x + 4) ** 2, 1.0 + 40 * (x + 2) ** 2))
    raw = list(loss)
    assert rules.minimum(lrs, raw, raw) == pytest.approx(1e-3, rel=0.1)
    assert rules.steepest(lrs, raw, raw) == pytest.approx(1e-2, rel=0.35)
    assert 1e-4 <= rules.valley(lrs, raw, raw) < 1e-2  # inside the falling part
    edge = lrs[int(rules.centered_curve(lrs, raw).argmin())]
    assert 10 ** -2.3 < edge < 10 ** -1.9  # the centred curve's minimum is the curve's, not later
    assert rules.centered(lrs, raw, raw) == pytest.approx(edge / rules.EDGE_FACTOR)
    assert rules.smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull toward 0
    assert rules.geometric_median([1e-3, 1e-1, 1e-2]) == pytest.approx(1e-2)


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr=1.0 >= end_lr=0.1"),
    ({"start_lr": 0.0}, "start_lr=0.0"),
    ({"num_steps": 3}, "num_steps=3"),
    ({"sweeps": 0}, "sweeps=0"),
    ({"rule": "magic"}, "rule='magic'"),
    ({"groups": "some"}, "groups='some'"),
])
def test_bad_settings_name_the_value(kwargs, message):
    x, y = _data()
    model = _model()
    opt = optim.create("adam", model.parameters(), lr=1e-3)
    before = _state(model, opt)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lr_find(model, opt, nn.CrossEntropyLoss(), (x, y), batch_size=32, **kwargs)
    _assert_equal(before, _state(model, opt))
