"""Adaptive family: behaviour the reference matrix does not single out."""

from __future__ import annotations

import io
import math

import pytest
import torch

from descentlab import optim


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_radam_early_steps_are_momentum_sgd_then_rectified(foreach):
    """With β₂ = 0.999, ρₜ ≤ 5 for t ≤ 5: the step is lr·m̂ with no √v at all."""
    torch.manual_seed(0)
    lr, (b1, _) = 0.01, (0.9, 0.999)
    p = torch.randn(7, dtype=torch.float64)
    opt = optim.create("radam", [p], lr=lr, foreach=foreach)
    m = torch.zeros_like(p)
    for t in range(1, 7):
        g = torch.randn(7, dtype=torch.float64) * 10.0**t  # √v would matter if used
        before = p.clone()
        _step(opt, [p], [g])
        m = b1 * m + (1 - b1) * g
        sgd = before - lr * m / (1 - b1**t)
        if t <= 5:
            torch.testing.assert_close(p, sgd, rtol=1e-12, atol=1e-12)
        else:
            assert not torch.allclose(p, sgd), "step 6 should be rectified"


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_radam_never_rectified_when_rho_inf_is_small(foreach):
    """β₂ = 0.5 gives ρ∞ = 3 ≤ 5: RAdam is momentum SGD for ever."""
    p = torch.ones(3, dtype=torch.float64)
    opt = optim.create("radam", [p], lr=0.1, betas=(0.0, 0.5), foreach=foreach)
    for _ in range(20):
        before = p.clone()
        _step(opt, [p], [torch.full((3,), 2.0, dtype=torch.float64)])
        torch.testing.assert_close(p, before - 0.2, rtol=0, atol=1e-14)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_adagrad_lr_decay_and_initial_accumulator(foreach):
    """Constant g: step t is lr/(1 + (t−1)κ) · g/(√(s₀ + t·g²) + ε)."""
    lr, kappa, s0, eps, g = 0.1, 0.5, 0.25, 1e-10, 3.0
    p = torch.zeros(2, dtype=torch.float64)
    opt = optim.create(
        "adagrad", [p], lr=lr, lr_decay=kappa, initial_accumulator_value=s0, foreach=foreach
    )
    want = 0.0
    for t in range(1, 11):
        _step(opt, [p], [torch.full((2,), g, dtype=torch.float64)])
        want -= lr / (1 + (t - 1) * kappa) * g / (math.sqrt(s0 + t * g * g) + eps)
        torch.testing.assert_close(p, torch.full((2,), want, dtype=torch.float64), rtol=1e-13, atol=0)
    torch.testing.assert_close(
        opt.state[p]["sum"], torch.full((2,), s0 + 10 * g * g, dtype=torch.float64)
    )


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_rmsprop_momentum_buffer_starts_at_the_first_update(foreach):
    """torch's buffer starts at 0, so b₁ = μ·0 + g/(√v₁ + ε) = g/(√v₁ + ε)."""
    alpha, eps, mu = 0.9, 1e-8, 0.7
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64)
    opt = optim.create("rmsprop", [p], alpha=alpha, momentum=mu, foreach=foreach)
    _step(opt, [p], [g])
    first = g / (((1 - alpha) * g * g).sqrt() + eps)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], first, rtol=1e-14, atol=0)
    _step(opt, [p], [g])
    second = mu * first + g / (((alpha * (1 - alpha) + (1 - alpha)) * g * g).sqrt() + eps)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], second, rtol=1e-14, atol=0)


def test_nadam_mu_product_is_torch_scalar_state():
    """mu_product is a 0-d float32 tensor like torch's, equal to the product of μₜ."""
    b1, psi = 0.9, 4e-3
    p = torch.zeros(2, dtype=torch.float64)
    opt = optim.create("nadam", [p])
    want = torch.tensor(1.0, dtype=torch.float32)
    for t in range(1, 31):
        _step(opt, [p], [torch.ones(2, dtype=torch.float64)])
        want *= b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
    prod = opt.state[p]["mu_product"]
    assert prod.dtype == torch.float32 and prod.dim() == 0
    assert torch.equal(prod, want)


@pytest.mark.parametrize("name", ["nadam", "radam", "adagrad", "rmsprop", "adadelta", "adamax"])
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_float64_resume_is_bitwise(name, foreach):
    """load_state_dict casts state to the param dtype; NAdam's float32
    mu_product must come back as it was for the resumed run to be exact."""
    torch.manual_seed(0)
    grads = [[torch.randn(4, 3, dtype=torch.float64)] for _ in range(20)]
    hp = {"foreach": foreach, "lr": 0.01}
    full = [torch.ones(4, 3, dtype=torch.float64)]
    opt = optim.create(name, full, **hp)
    for g in grads:
        _step(opt, full, g)

    half = [torch.ones(4, 3, dtype=torch.float64)]
    opt = optim.create(name, half, **hp)
    for g in grads[:10]:
        _step(opt, half, g)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt = optim.create(name, half, **hp)
    opt.load_state_dict(torch.load(buf, weights_only=True))
    for g in grads[10:]:
        _step(opt, half, g)
    assert torch.equal(half[0], full[0])


@pytest.mark.parametrize("name", ["nadam", "radam"])
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_decoupled_weight_decay_shrinks_params_without_touching_moments(name, foreach):
    lr, wd = 0.1, 0.2
    p = torch.full((3,), 2.0, dtype=torch.float64)
    opt = optim.create(name, [p], lr=lr, weight_decay=wd, decoupled_weight_decay=True, foreach=foreach)
    for t in range(1, 6):
        _step(opt, [p], [torch.zeros(3, dtype=torch.float64)])
        torch.testing.assert_close(p, torch.full((3,), 2.0 * (1 - lr * wd) ** t, dtype=torch.float64))
    assert torch.count_nonzero(opt.state[p]["exp_avg"]) == 0
    # Coupled: the decay goes through the moments instead.
    q = torch.full((3,), 2.0, dtype=torch.float64)
    opt = optim.create(name, [q], lr=lr, weight_decay=wd, foreach=foreach)
    _step(opt, [q], [torch.zeros(3, dtype=torch.float64)])
    want = torch.full((3,), 0.1 * wd * 2.0, dtype=torch.float64)
    torch.testing.assert_close(opt.state[q]["exp_avg"], want)


INVALID = [
    ("adagrad", {"lr_decay": -0.1}, "invalid lr_decay=-0.1"),
    ("adagrad", {"initial_accumulator_value": -1.0}, "invalid initial_accumulator_value=-1.0"),
    ("adagrad", {"eps": 0.0}, "invalid eps=0.0"),
    ("rmsprop", {"alpha": 1.5}, "invalid alpha=1.5"),
    ("rmsprop", {"centered": 1}, "invalid centered=1"),
    ("adadelta", {"rho": 1.0}, "invalid rho=1.0"),
    ("adamax", {"betas": (0.9, 1.0)}, "invalid betas=(0.9, 1.0)"),
    ("nadam", {"momentum_decay": -0.004}, "invalid momentum_decay=-0.004"),
    ("nadam", {"decoupled_weight_decay": "yes"}, "invalid decoupled_weight_decay='yes'"),
    ("radam", {"decoupled_weight_decay": None}, "invalid decoupled_weight_decay=None"),
]


@pytest.mark.parametrize("name,hp,message", INVALID, ids=[f"{n}-{list(h)[0]}" for n, h, _ in INVALID])
def test_invalid_hyperparameters(name, hp, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        optim.create(name, [torch.zeros(2, requires_grad=True)], **hp)
