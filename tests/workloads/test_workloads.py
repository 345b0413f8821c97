
import numpy as np
import pytest
import torch

from descentlab import optim, schedules, workloads
from descentlab.workloads.recipes import RECIPE_KEYS
from tests.workloads.rng import assert_no_global_draws

FAMILIES = ("digits-resnet", "digits-vit", "charlm-tiny", "translate", "molgraph", "clicks", "digits-unet", "mnist1d-ctc")
# mnist-cnn, charlm and the families suite's workloads have their own tests (test_mnist.py, test_charlm.py,
# test_families_a.py, test_families_b.py): their data are not (x, y) feature tensors of the sizes below
BUILTIN = [n for n in workloads.available() if n not in ("mnist-cnn", "charlm", *FAMILIES)]
SIZES = {  # (train, val, test)
    "linreg": (720, 80, 200),
    "diabetes": (319, 35, 88),
    "digits-mlp": (1294, 144, 359),
    "digits-cnn": (1294, 144, 359),
    **{f"mnist1d-{k}": (3600, 400, 1000) for k in ("logreg", "mlp", "cnn")},
}
INPUT_SHAPE = {"linreg": (10,), "diabetes": (10,), "digits-mlp": (64,), "digits-cnn": (1, 8, 8)}


def load(request, name, seed=0):
    if name.startswith("mnist1d"):
        request.getfixturevalue("use_mnist1d_cache")
    return workloads.load(name, seed=seed)


@pytest.mark.parametrize("name", BUILTIN)
def test_shapes_dtypes_and_fields(request, name):
    w = load(request, name)
    assert w.name == name and isinstance(w.description, str) and "\n" not in w.description
    classification = w.task == "classification"
    for split, size in zip(workloads.SPLITS, SIZES[name]):
        x, y = w.split(split)
        assert x.dtype == torch.float32 and x.shape == (size, *INPUT_SHAPE.get(name, (40,)))
        assert y.shape == (size,)
        assert y.dtype == (torch.int64 if classification else torch.float32)
        assert torch.isfinite(x).all()
        if classification:
            assert 0 <= y.min() and y.max() < w.num_classes
    # Inputs standardised with the train split's statistics only.
    x = w.train[0]
    assert abs(x.mean().item()) < 1e-3 and (abs(x.std().item() - 1) < 1e-2 or name in ("linreg", "diabetes"))
    assert isinstance(w.loss_fn, torch.nn.Module)
    assert w.metric == ("accuracy" if classification else "r2")
    assert (w.num_classes is None) == (not classification)


@pytest.mark.parametrize("name", BUILTIN)
def test_recipe_is_complete_and_runs(request, name):
    w = load(request, name)
    r = w.recipe
    assert tuple(r) == RECIPE_KEYS
    assert (r["epochs"] is None) != (r["steps"] is None)
    assert r["optimizer"] in optim.available() and r["lr"] > 0
    torch.manual_seed(0)
    opt = optim.create(r["optimizer"], w.make_model().parameters(), lr=r["lr"],
                       weight_decay=r["weight_decay"], **r["optimizer_kwargs"])
    if r["schedule"]:
        schedules.create(r["schedule"], opt, **r["schedule_kwargs"])
    assert set(w.lr_defaults) == set(optim.available())
    assert all(lr > 0 for lr in w.lr_defaults.values())
    assert w.default_lr(r["optimizer"]) == r["lr"]
    lr = r["lr"]
    w.recipe["lr"] = -1.0  # a caller's edit stays with that instance
    assert load(request, name).recipe["lr"] == lr


@pytest.mark.parametrize("name", BUILTIN)
def test_same_seed_same_data_other_seed_other_split(request, name):
    a, b, c = load(request, name, 0), load(request, name, 0), load(request, name, 1)
    for split in workloads.SPLITS:
        for t_a, t_b in zip(a.split(split), b.split(split)):
            assert torch.equal(t_a, t_b)
    assert not torch.equal(a.train[0][:50], c.train[0][:50])
    assert not torch.equal(a.val[0], c.val[0])
    if name.startswith("mnist1d"):  # the test set is the package's, whatever the seed
        assert torch.equal(a.test[1], c.test[1])


def test_default_lr():
    w = workloads.load("digits-mlp")
    assert w.default_lr("adam") == w.recipe["lr"] and w.default_lr("Lion") == w.lr_defaults["lion"]
    with pytest.raises(ValueError, match="did you mean 'adam"):
        w.default_lr("adan")


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_few_steps_lower_the_training_loss(request, name, optimizer):
    w = load(request, name)
    torch.manual_seed(0)
    model = w.make_model()
    opt = optim.create(optimizer, model.parameters(), lr=w.default_lr(optimizer))
    x, y = w.train[0][:512], w.train[1][:512]

    def loss() -> float:
        with torch.no_grad():
            return w.loss_fn(model(x), y).item()

    before = loss()
    batches = w.batches("train", 64, seed=0)
    for step, (xb, yb) in zip(range(20), batches):
        opt.zero_grad()
        w.loss_fn(model(xb), yb).backward()
        opt.step()
    assert loss() < before


@pytest.mark.parametrize("name", BUILTIN)
def test_model_is_deterministic_and_nothing_is_seeded_globally(request, name):
    load(request, name)  # warm the cache: generation itself restores the global states too
    w = assert_no_global_draws(lambda: load(request, name, seed=7))

    torch.manual_seed(5)
    m1 = w.make_model()
    torch.manual_seed(5)
    m2 = w.make_model()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    out = m1(w.test[0][:7])
    assert out.shape == ((7, w.num_classes) if w.task == "classification" else (7,))
    assert np.isfinite(w.metric_fn(out.detach(), w.test[1][:7]))


def test_linreg_oracle_is_near_the_noise_bound():
    w = workloads.load("linreg")
    assert 0.5 < w.info["oracle_test_r2"] < 1.0


def test_mnist1d_info(use_mnist1d_cache):
    w = workloads.load("mnist1d-cnn")
    assert w.info["published_test_accuracy"] == 0.94
    assert sum(p.numel() for p in w.make_model().parameters()) == 5210
