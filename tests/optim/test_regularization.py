"""Regularization: why L1 exists, and why decoupled decay is not L2 under Adam."""

from __future__ import annotations

import pytest
import torch

from descentlab import optim
from descentlab.optim import transforms as T


def _sparse_regression(seed=0, n=40, d=100, informative=5):
    """An over-parameterized linear regression (d > n) whose truth has 5 non-zero weights."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w_true = torch.zeros(d)
    w_true[:informative] = torch.tensor([3.0, -2.0, 1.5, -1.0, 2.5])
    y = x @ w_true + 0.01 * torch.randn(n, generator=g)
    return x, y, informative


def _fit(**reg):
    x, y, k = _sparse_regression()
    w = torch.zeros(x.shape[1], requires_grad=True)
    opt = optim.create("sgd", [w], lr=0.01, **reg)
    for _ in range(3000):
        opt.zero_grad()
        loss = 0.5 * ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
    return w.detach(), k


def test_l1_drives_irrelevant_weights_to_zero_where_l2_does_not():
    w_l1, k = _fit(l1=0.05)
    w_l2, _ = _fit(l2=0.05)
    near_zero_l1 = int((w_l1[k:].abs() < 0.02).sum())
    near_zero_l2 = int((w_l2[k:].abs() < 0.02).sum())
    irrelevant = w_l1.numel() - k
    # L1 (subgradient descent, so near zero rather than exactly zero) zeroes most
    # of the 95 irrelevant weights; L2 of the same strength shrinks them all a
    # little and zeroes few.
    # (measured: 78 of 95 under L1, 7 under L2)
    assert near_zero_l1 >= 0.7 * irrelevant, near_zero_l1
    assert near_zero_l2 <= 0.2 * irrelevant, near_zero_l2
    # L1 keeps the informative weights, and closer to the truth than L2, which
    # spreads the fit over the irrelevant ones.
    truth = torch.tensor([3.0, -2.0, 1.5, -1.0, 2.5])
    assert (w_l1[:k].abs() > 0.5).all()
    assert (w_l1[:k] - truth).norm() < (w_l2[:k] - truth).norm()


def test_decoupled_decay_differs_from_coupled_l2_under_adam():
    """Loshchilov & Hutter (ICLR 2019): under Adam, the L2 gradient λ·p is divided
    by √v like any gradient, so every weight moves by about lr whatever its size;
    decoupled decay shrinks each weight in proportion, p ← p·(1 − lr·λ)."""
    p0 = torch.tensor([10.0, 1.0, 0.1, -5.0])
    lr, lam = 0.01, 0.1
    coupled, decoupled = p0.clone(), p0.clone()
    opt_c = optim.create("adam", [coupled], lr=lr, weight_decay=lam)
    opt_d = optim.create("adamw", [decoupled], lr=lr, weight_decay=lam)
    for p, opt in ((coupled, opt_c), (decoupled, opt_d)):
        p.grad = torch.zeros_like(p)  # the loss is flat: only the regularizer acts
        opt.step()
    torch.testing.assert_close(decoupled, p0 * (1 - lr * lam))
    torch.testing.assert_close(coupled, p0 - lr * torch.sign(p0), rtol=1e-5, atol=1e-6)
    # The large weight barely shrinks (0.01 %) under coupled L2 but 0.1 % decoupled.
    shrink_coupled = float((p0[0] - coupled[0]) / p0[0])
    shrink_decoupled = float((p0[0] - decoupled[0]) / p0[0])
    assert shrink_coupled == pytest.approx(lr / 10.0, rel=1e-3)  # 0.1 %: lr over |p|
    assert shrink_decoupled == pytest.approx(lr * lam, rel=1e-3)  # 0.1 % too, but for every size
    small_coupled = float((p0[2] - coupled[2]) / p0[2])
    small_decoupled = float((p0[2] - decoupled[2]) / p0[2])
    assert small_coupled == pytest.approx(0.1, rel=1e-3) and small_decoupled == pytest.approx(lr * lam, rel=1e-3)


def test_under_sgd_coupled_and_decoupled_coincide():
    p0 = torch.randn(5)
    a, b = p0.clone(), p0.clone()
    g = torch.randn(5)
    oa = optim.create("sgd", [a], lr=0.1, weight_decay=0.2)
    ob = optim.create("sgd", [b], lr=0.1, decoupled_decay=0.2)
    a.grad, b.grad = g.clone(), g.clone()
    oa.step()
    ob.step()
    torch.testing.assert_close(a, b)


def test_masked_decay_applies_to_matrices_only():
    w, bias = torch.ones(3, 2), torch.ones(2)
    opt = optim.chain(
        [w, bias],
        T.masked(T.add_decayed_weights(weight_decay=0.5), lambda name, p: p.ndim >= 2),
        lr=0.1,
    )
    w.grad, bias.grad = torch.zeros(3, 2), torch.zeros(2)
    opt.step()
    torch.testing.assert_close(w, torch.full((3, 2), 0.95))
    assert torch.equal(bias, torch.ones(2))


def test_masked_by_name_creates_state_only_for_selected_params():
    model = torch.nn.Linear(3, 2)
    opt = optim.chain(model.named_parameters(), T.masked(T.scale_by_adam(), ["weight"]), lr=0.1)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert "exp_avg" in opt.state[model.weight]
    assert "exp_avg" not in opt.state[model.bias]
