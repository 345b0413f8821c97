"""LAMB and LARS against hand computations of their papers' update rules.

The reference matrix checks lamb against an adapted pytorch_optimizer.Lamb (see
refs/trust.py); here it is checked against Algorithm 2 written out directly,
including the zero-norm rule, and LARS's first momentum step (where its
zero-initialized buffer differs from torch's SGD) is checked by hand.
"""

from __future__ import annotations

import pytest
import torch

from descentlab import optim
from descentlab.optim import transforms as T

from .problems import make_grads, make_params, run

SHAPES = [(4, 3), (5,), (2, 2)]


def _lamb_by_hand(params, grad_seq, lr, betas, eps, wd):
    """Algorithm 2 of You et al. (ICLR 2020), φ = identity, one tensor at a time."""
    b1, b2 = betas
    xs = [p.clone() for p in params]
    ms = [torch.zeros_like(p) for p in params]
    vs = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grad_seq, start=1):
        for i, g in enumerate(grads):
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat = ms[i] / (1 - b1**t)
            v_hat = vs[i] / (1 - b2**t)
            r = m_hat / (v_hat.sqrt() + eps) + wd * xs[i]
            x_norm, r_norm = xs[i].norm(), r.norm()
            ratio = x_norm / r_norm if x_norm > 0 and r_norm > 0 else 1.0
            xs[i] = xs[i] - lr * ratio * r
    return xs


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("hp", [{}, {"lr": 0.01, "weight_decay": 0.1, "eps": 1e-3, "betas": (0.8, 0.9)}])
def test_lamb_is_algorithm_2(hp, foreach):
    full = {**optim.get("lamb").defaults, **hp}
    params = make_params(SHAPES, torch.float64)
    params[2].zero_()  # ‖p‖ = 0: the ratio is 1, so the tensor still moves
    grad_seq = make_grads(SHAPES, steps=6, dtype=torch.float64)
    want = _lamb_by_hand(params, grad_seq, full["lr"], full["betas"], full["eps"], full["weight_decay"])
    opt = optim.create("lamb", params, foreach=foreach, **hp)
    run(opt, params, grad_seq)
    for got, w in zip(params, want):
        torch.testing.assert_close(got, w, rtol=1e-12, atol=1e-15)
    assert params[2].abs().sum() > 0


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_lars_first_steps_by_hand(foreach):
    lr, wd, mu, tau, eta = 0.5, 0.01, 0.9, 0.2, 0.02
    params = make_params(SHAPES, torch.float64)
    start = [p.clone() for p in params]
    grad_seq = make_grads(SHAPES, steps=2, dtype=torch.float64)
    opt = optim.create(
        "lars", params, lr=lr, weight_decay=wd, momentum=mu, dampening=tau,
        trust_coefficient=eta, foreach=foreach,
    )
    run(opt, params, grad_seq)
    for i, x in enumerate(start):
        buf = torch.zeros_like(x)
        for grads in grad_seq:
            g = grads[i]
            if x.ndim > 1:  # the layer-wise rate and the decay apply to weights only
                ratio = eta * x.norm() / (g.norm() + wd * x.norm())
                g = ratio * (g + wd * x)
            buf = mu * buf + (1 - tau) * g  # the buffer starts at 0: dampened from step 1
            x = x - lr * buf
        torch.testing.assert_close(params[i], x, rtol=1e-12, atol=1e-15)


def test_lars_momentum_differs_from_trace_only_with_dampening():
    g = torch.tensor([1.0, -2.0])
    for tau, same in ((0.0, True), (0.3, False)):
        outs = []
        for t in (T.trace(), T.trace_from_zero()):
            group = {**t.defaults, "momentum": 0.9, "dampening": tau}
            outs.append(t.update_tensor(g, g, {}, group))
        assert torch.equal(outs[0], outs[1]) is same


def test_lars_nesterov_rules():
    p = [torch.zeros(3, 2, requires_grad=True)]
    optim.create("lars", p, nesterov=True, dampening=0.1)  # allowed, as in pytorch_optimizer.LARS
    with pytest.raises(ValueError, match=r"invalid nesterov=True with momentum=0\.0"):
        optim.create("lars", p, nesterov=True, momentum=0.0)


def test_lamb_trust_ratio_alone_in_a_custom_chain():
    """``scale_by_trust_ratio`` alone: every tensor moves by lr·η·‖p‖."""
    params = make_params(SHAPES)
    start = [p.clone() for p in params]
    opt = optim.chain(params, T.scale_by_trust_ratio(trust_coefficient=0.5), lr=0.1)
    run(opt, params, make_grads(SHAPES, steps=1))
    for p, s in zip(params, start):
        torch.testing.assert_close((p - s).norm(), 0.05 * s.norm())


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", ["lion", "lamb", "lars"])
def test_gradients_are_not_written_into(name, foreach):
    params = make_params(SHAPES)
    grads = make_grads(SHAPES, steps=3)
    opt = optim.create(name, params, foreach=foreach, weight_decay=0.1)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
    assert all(torch.equal(g, h) for g, h in zip(grads[-1], make_grads(SHAPES, steps=3)[-1]))
