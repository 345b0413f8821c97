"""Structured pruning: channels removed for real (Torch-Pruning), the optimizer's state
carried across exactly, the smaller model reloadable in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from descentlab import optim
from descentlab.compress import ChannelPruner, load_model, prune_channels, save_model
from descentlab.workloads.models import ConvNet1d

X = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
LENGTH_AFTER = 5  # ConvNet1d's last feature map on length-40 signals: the head sees channels x 5


def _model(channels: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return ConvNet1d(40, 10, channels=channels)


def _steps(model, opt, n, x=X, y=Y) -> list[float]:
    losses = []
    for _ in range(n):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def _kept(history, name: str, size: int, out: bool = True) -> torch.Tensor:
    removed = {i for layer, is_out, idxs in history if layer == name and is_out == out for i in idxs}
    return torch.tensor([i for i in range(size) if i not in removed])


def _expected_slices(history, channels: int) -> dict[str, list[tuple[int, torch.Tensor]]]:
    """From Torch-Pruning's history alone: which entries of each parameter survive."""
    k0, k2, k4 = (_kept(history, f"features.{i}", channels) for i in (0, 2, 4))
    head_cols = torch.cat([torch.arange(c * LENGTH_AFTER, (c + 1) * LENGTH_AFTER) for c in k4.tolist()])
    return {
        "features.0.weight": [(0, k0)], "features.0.bias": [(0, k0)],
        "features.2.weight": [(0, k2), (1, k0)], "features.2.bias": [(0, k2)],
        "features.4.weight": [(0, k4), (1, k2)], "features.4.bias": [(0, k4)],
        "head.weight": [(1, head_cols)], "head.bias": [],
    }


def _sliced(t: torch.Tensor, slices) -> torch.Tensor:
    for dim, keep in slices:
        if t.ndim == 0 or t.shape[dim] == 1:
            continue
        t = t.index_select(dim, keep)
    return t


# adam and momentum as the issue asks; adafactor for factored state, muon for its two groups,
# prodigy for its p0 and scalars (adamw and lion hold the same kinds of state as adam)
@pytest.mark.parametrize("name", ["adam", "momentum", "adafactor", "muon", "prodigy"])
def test_pruning_mid_training_keeps_the_optimizer_state_of_every_kept_weight(name):
    model = _model()
    opt = optim.create(name, model.parameters(), lr=1e-2 if name != "prodigy" else 1.0)
    _steps(model, opt, 5)
    before = {n: (p.detach().clone(), {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()})
              for n, p in model.named_parameters()}
    pruner = ChannelPruner(model, X[:2], 0.5)
    pruner.step(opt)
    expected = _expected_slices(pruner.pruning_history(), 8)
    params = {n: p for n, p in model.named_parameters()}
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in in_opt} == {id(p) for p in params.values()}  # the new tensors, none of the old
    assert len(opt.state) == len(params)
    for n, p in params.items():
        weight, state = before[n]
        assert torch.equal(p.detach(), _sliced(weight, expected[n])), n
        assert set(opt.state[p]) == set(state), n
        for key, value in state.items():
            now = opt.state[p][key]
            if torch.is_tensor(value) and value.ndim:
                if name == "adafactor" and key in ("row_var", "col_var"):
                    # factored moments: sliced where they have the dimension, kept where they average over it
                    assert now.ndim == value.ndim and all(a in (1, b) for a, b in zip(now.shape, p.shape)), key
                    continue
                assert torch.equal(now, _sliced(value, expected[n])), f"{name}: {n} {key}"
            else:
                assert (now == value) if not torch.is_tensor(now) else torch.equal(now, value), f"{name}: {n} {key}"
    assert model.features[0].out_channels == 4 and model.head.in_features == 4 * LENGTH_AFTER
    _steps(model, opt, 3)  # and training goes on with the smaller tensors


#: the most the mean training loss of the 10 steps after a prune may exceed the mean of the
#: 10 steps before it, in nats (docs/compress.md: measured up to 0.73 for adam at lr 1e-2, 0.18 for momentum)
LOSS_JUMP_TOLERANCE = 1.0


@pytest.mark.parametrize("name, lr", [("adam", 1e-2), ("momentum", 0.05)])
def test_pruning_mid_training_on_mnist1d_keeps_the_loss_within_tolerance(name, lr):
    """Half the channels of the MNIST-1D CNN removed in 8 steps from step 300, the state carried."""
    from descentlab import Trainer, workloads
    from descentlab.compress import ChannelPruning

    x, y = workloads.load("mnist1d-cnn").train
    torch.manual_seed(0)
    model = ConvNet1d(40, 10, channels=25)
    opt = optim.create(name, model.parameters(), lr=lr)
    cb = ChannelPruning(x[:2], 0.5, start=300, steps=8, frequency=40)
    Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[cb], batch_size=100, seed=0).fit((x, y), max_steps=620)
    assert len(cb.jumps) == 8 and all(j["after"] is not None for j in cb.jumps)
    worst = max(j["after"] - j["before"] for j in cb.jumps)
    assert worst <= LOSS_JUMP_TOLERANCE, cb.jumps
    assert sum(p.numel() for p in model.parameters()) <= 0.55 * 5210
    assert cb.jumps[-1]["after"] < 0.6  # and it goes on learning: below a quarter of chance (ln 10 = 2.3)


def test_the_pruned_model_is_smaller_and_reloads_in_a_fresh_process_with_identical_outputs(tmp_path):
    model = _model(25)
    dense = sum(p.numel() for p in model.parameters())
    pruner = prune_channels(model, X[:2], 0.5)
    assert sum(p.numel() for p in model.parameters()) <= 0.55 * dense
    path = tmp_path / "pruned.pt"
    save_model(path, model, workload="mnist1d-cnn", example=X, pruning_history=pruner.pruning_history())
    torch.save({"x": X, "y": model.eval()(X).detach()}, tmp_path / "io.pt")
    code = (
        "import torch, sys\n"
        "from descentlab.compress import load_model\n"
        f"io = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)\n"
        f"m = load_model({str(path)!r})\n"
        "assert torch.equal(m(io['x']), io['y']), 'outputs differ'\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == sum(p.numel() for p in model.parameters())
    # the file holds tensors and plain values only
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "descentlab-model" and payload["pruning_history"]


def test_output_layer_is_left_whole():
    model = _model()
    prune_channels(model, X[:2], 0.5)
    assert model.head.out_features == 10
    assert model(X).shape == (64, 10)


class HardReshape(nn.Module):
    """A forward with the channel count written into it: cannot run once channels go."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 3)
        self.out = nn.Linear(8 * 38, 10)

    def forward(self, x):
        return self.out(self.conv(x.view(-1, 1, 40)).view(-1, 8 * 38))


class WithGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(40, 16)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        return self.out(self.gru(self.inp(x).unsqueeze(1))[0][:, 0])


@pytest.mark.parametrize("cls, words", [(HardReshape, "no longer runs"), (WithGRU, "cannot prune layer")])
def test_a_model_the_pruner_cannot_handle_is_refused_untouched(cls, words):
    torch.manual_seed(0)
    model = cls()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=words) as info:
        ChannelPruner(model, X[:2], 0.5)
    assert "\n" not in str(info.value)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("bad", [-0.5, 1.0, 2, float("inf")])
def test_channel_sparsity_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="channel sparsity"):
        ChannelPruner(_model(), X[:2], bad)


def test_load_model_refuses_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a descentlab model file"):
        load_model(path)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_model(tmp_path / "bad.pt")


class Residual(nn.Module):
    """A residual block with BatchNorm: the add couples both branches' channels."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(40, 16)
        self.mid = nn.Linear(16, 16)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        z = self.inp(x)
        return self.out(torch.relu(z + self.bn(self.mid(z))))


def test_coupled_layers_follow_and_their_state_is_carried():
    torch.manual_seed(0)
    model = Residual()
    opt = optim.create("adamw", model.parameters(), lr=1e-2)
    _steps(model, opt, 3)
    bn_avg = opt.state[model.bn.weight]["exp_avg"].clone()
    pruner = ChannelPruner(model, X[:2], 0.5)
    pruner.step(opt)
    assert model.inp.out_features == model.mid.out_features == model.bn.num_features == model.out.in_features == 8
    kept = _kept(pruner.pruning_history(), pruner.pruning_history()[0][0], 16)
    assert torch.equal(opt.state[model.bn.weight]["exp_avg"], bn_avg[kept])
    assert model.bn.running_mean.shape == (8,)
    _steps(model, opt, 3)
    assert model(X).shape == (64, 10)
