"""The families workloads digits-resnet, digits-vit, charlm-tiny and digits-unet: the data
their docstrings describe, seeded and deterministic, models that train, metrics, and the
held-out variants. The timings and lr sweeps are in the modules' comments, not tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from descentlab.benchmark import variants
from descentlab.workloads import registry
from descentlab.workloads.families import _digits, lm, resnet, unet, vit
from tests.workloads.rng import assert_no_global_draws

NAMES = {"digits-resnet": resnet.digits_resnet, "digits-vit": vit.digits_vit,
         "digits-unet": unet.digits_unet, "charlm-tiny": lm.charlm_tiny}
VARIANTS = {"digits-resnet": "silu", "digits-vit": "relu", "digits-unet": "tanh", "charlm-tiny": "relu"}


@pytest.fixture(scope="module")
def built():
    """{(name, seed): workload}, each built once, seeds 0 and 1."""
    out = {}
    for name, build in NAMES.items():
        for seed in (0, 1):
            out[name, seed] = build(seed)
    return out


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for s, t in zip((a.train, a.val, a.test), (b.train, b.val, b.test))
               for x, y in zip(s, t))


def _batch(wl, n=16):
    x, y = wl.train
    return x[:n], y[:n]


def test_registered_with_their_builders():
    for name, build in NAMES.items():
        spec = registry.get(name)
        assert spec.build is build and spec.summary


@pytest.mark.parametrize("name", list(NAMES))
def test_deterministic_per_seed_and_no_global_draws(name, built):
    again = assert_no_global_draws(lambda: NAMES[name](0))
    assert _same(again, built[name, 0])
    other = built[name, 1]
    assert not torch.equal(other.train[0], built[name, 0].train[0])  # the seed changes the data
    assert again.seed == 0 and other.seed == 1


def test_digits_split_is_50_25_25_and_disjoint():
    images, labels = _digits.load()
    assert images.shape == (1797, 8, 8) and images.min() == 0 and images.max() == 16
    for seed in (0, 1):
        parts = _digits.split(len(labels), seed)
        assert [len(p) for p in parts] == [899, 449, 449]
        assert len(np.unique(np.concatenate(parts))) == 1797  # a partition
        for p in parts:  # every class in every part, near its 10% (the split is not stratified)
            counts = np.bincount(labels[p], minlength=10) / len(p)
            assert counts.min() > 0.06 and counts.max() < 0.14
    assert not np.array_equal(_digits.split(1797, 0)[0], _digits.split(1797, 1)[0])


@pytest.mark.parametrize("name", ["digits-resnet", "digits-vit"])
def test_digits_classifiers_data_and_metric(name, built):
    wl = built[name, 0]
    x, y = wl.train
    assert x.shape == (899, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert wl.val[0].shape == (449, 1, 8, 8) and wl.test[0].shape == (449, 1, 8, 8)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2  # standardised with train statistics
    assert wl.metric == "loss" and wl.metric_mode == "min" and wl.task == "classification" and wl.num_classes == 10
    assert set(y.tolist()) == set(range(10))


def test_digits_unet_data_is_undersampled_digits(built):
    wl = built["digits-unet", 0]
    (x, y), (vx, vy) = wl.train, wl.val
    assert x.shape == y.shape == (2 * 899, 1, 8, 8) and vx.shape == vy.shape == (449, 1, 8, 8)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0  # pixel / 16
    assert torch.equal(y[:899], y[899:])  # each training image twice ...
    assert not torch.equal(x[:899], x[899:])  # ... with another mask
    # the input keeps exactly the mask's columns of k-space: KEPT_COLUMNS of SIZE, the centre always
    masks = unet.column_masks(100, 0, "test")
    assert torch.all(masks.sum(1) == unet.KEPT_COLUMNS) and torch.all(masks[:, 0] == 1)
    assert torch.allclose(unet.undersample(vy[:, 0], torch.ones(449, 8)), vy[:, 0], atol=1e-5)  # all kept: exact
    assert not torch.allclose(unet.undersample(vy[:, 0], masks[:1].expand(449, 8)), vy[:, 0], atol=1e-2)
    zero_filled = unet.ssim(vx, vy)
    assert 0.5 < zero_filled < 0.9  # the corruption is real, and the images stay recognisable
    assert wl.metric == "ssim" and wl.metric_mode == "max" and wl.metric_range == (-1.0, 1.0)


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 1, 8, 8, generator=g)
    assert unet.ssim(a, a) == pytest.approx(1.0)
    assert unet.ssim(a + 0.1 * torch.rand(5, 1, 8, 8, generator=g), a) < 0.99
    assert unet.ssim(torch.zeros(0, 1, 8, 8), torch.zeros(0, 1, 8, 8)) == 0.0
    with pytest.raises(ValueError):
        unet.ssim(a, a[:, :, :4])


def test_charlm_tiny_data(built):
    wl = built["charlm-tiny", 0]
    x, y = wl.train
    block = lm.MODEL["block_size"]
    assert wl.info["characters"] == lm.CORPUS_CHARS and wl.info["first_file"] == "_VF.py"
    assert x.shape == y.shape == ((270_000 - 1) // block, block) and torch.equal(x[:, 1:], y[:, :-1])
    assert wl.val[0].shape == (lm.VAL_WINDOWS, block)
    other = built["charlm-tiny", 1]
    assert torch.equal(other.val[0], wl.val[0]) and torch.equal(other.test[0], wl.test[0])  # the seed draws windows only
    assert wl.metric == "bpc" and wl.metric_mode == "min"


@pytest.mark.parametrize("name", list(NAMES))
def test_model_loss_metric_and_a_few_steps_reduce_the_loss(name, built):
    wl = built[name, 0]
    torch.manual_seed(0)
    model = wl.make_model()
    assert 10_000 < sum(p.numel() for p in model.parameters()) < 200_000
    xb, yb = _batch(wl, 32)
    out = model(xb)
    loss = wl.loss_fn(out, yb)
    assert loss.ndim == 0 and torch.isfinite(loss)
    if wl.metric == "ssim":
        assert -1.0 <= wl.metric_fn(out, yb) <= 1.0
    else:
        assert wl.metric_fn(loss.item()) > 0  # from the loss: loss, bpc
    opt = torch.optim.Adam(model.parameters(), lr=wl.default_lr("adam"))
    first = None
    for _ in range(20):
        loss = wl.loss_fn(model(xb), yb)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert wl.loss_fn(model(xb), yb).item() < 0.9 * first
    assert wl.recipe["steps"] and wl.default_lr("momentum") > 0


@pytest.mark.parametrize("name", list(NAMES))
def test_variant_swaps_the_activation(name, built, monkeypatch):
    monkeypatch.setattr(registry, "load", lambda n, seed=0, data_dir=None: built[n, seed])
    monkeypatch.setattr("descentlab.workloads.load", lambda n, seed=0, data_dir=None: built[n, seed])
    act = VARIANTS[name]
    changed = variants.build(name, {"activation": act})
    torch.manual_seed(0)
    model = changed.make_model()
    kinds = {type(m) for m in model.modules() if isinstance(m, variants.SWAPPED)}
    assert kinds == {type(variants.ACTIVATIONS[act]())}
    torch.manual_seed(0)
    base = built[name, 0].make_model()
    assert {type(m) for m in base.modules() if isinstance(m, variants.SWAPPED)} != kinds
    with torch.no_grad():  # zero-initialised heads and BatchNorm scales would hide the change
        for a, b in zip(model.parameters(), base.parameters()):
            if not a.any():
                fill = torch.linspace(-1.0, 1.0, a.numel()).view_as(a)
                a.copy_(fill), b.copy_(fill)
    xb = _batch(built[name, 0], 8)[0]
    assert not torch.allclose(model(xb), base(xb))  # same weights, another activation


def test_resnet_blocks_start_as_their_shortcuts():
    torch.manual_seed(0)
    model = resnet.DigitsResNet()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) >= 5
    for block in model.blocks:
        assert torch.all(block.bn2.weight == 0)
