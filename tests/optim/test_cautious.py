"""``cautious=True`` (Liang et al. 2024) on every named optimizer.

References: C-Lion is ``pytorch_optimizer.Lion(cautious=True)``; C-AdamW is the
paper's Algorithm (arXiv 2411.16085, Alg. 1 with AdamW as the base), written
below as a plain loop because no installed package has it; ADOPT's and MARS's
``cautious=True`` in pytorch_optimizer mask the same coordinates as ours (their
masks compare m with g before a positive scaling).
"""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_optimizer import ADOPT, MARS, Lion

from descentlab import optim

from .problems import ANY_SHAPES, make_grads, make_params, rel_diff, run
from .refs import REFERENCES

NAMES = optim.available()


class _CAdamW:
    """C-AdamW from the paper: AdamW whose step is masked by 1[m ⊙ g > 0] and rescaled
    by numel/(Σmask + 1); decoupled decay p ← p(1 − lr·wd) unmasked."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        self.params, self.lr, self.betas, self.eps, self.wd = params, lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            p.mul_(1 - self.lr * self.wd)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            mask = (m * g > 0).to(g.dtype)
            mask = mask * (mask.numel() / (mask.sum() + 1))
            denom = (v.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
            p.add_((m * mask) / denom, alpha=-self.lr / (1 - b1**self.t))


def _compare(name, reference, hp, dtype=torch.float32, tol=1e-5):
    grads = make_grads(ANY_SHAPES, dtype=dtype)
    ref_p = make_params(ANY_SHAPES, dtype)
    run(reference(ref_p), ref_p, grads)
    for mode in ({"foreach": False}, {"foreach": True}, {"fused": True}):  # fused: the C++ count pass
        ours_p = make_params(ANY_SHAPES, dtype)
        run(optim.create(name, ours_p, cautious=True, **mode, **hp), ours_p, grads)
        for a, r in zip(ours_p, ref_p):
            assert rel_diff(a, r) <= tol, f"{name} {mode}: {rel_diff(a, r):.2e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cautious_adamw_is_the_papers(dtype):
    hp = {"lr": 3e-3, "weight_decay": 0.05}
    _compare("adamw", lambda ps: _CAdamW(ps, **hp), hp, dtype, 1e-5 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cautious_lion_is_pytorch_optimizers(dtype):
    hp = {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.1}
    _compare("lion", lambda ps: Lion(ps, cautious=True, **hp), hp, dtype, 1e-5 if dtype == torch.float32 else 1e-9)


def test_cautious_adopt_and_mars_are_pytorch_optimizers():
    _compare("adopt", lambda ps: ADOPT(ps, lr=2e-3, cautious=True), {"lr": 2e-3})
    hp = {"lr": 2e-3, "weight_decay": 0.01, "gamma": 0.05}
    _compare("mars", lambda ps: MARS(ps, cautious=True, **hp), hp)


def test_cautious_false_is_the_plain_optimizer_bit_for_bit():
    grads = make_grads(ANY_SHAPES, steps=20)
    for name in ("adamw", "lion", "muon", "mars"):
        a, b = make_params(ANY_SHAPES), make_params(ANY_SHAPES)
        run(optim.create(name, a, fused=False), a, grads)
        run(optim.create(name, b, fused=False, cautious=False), b, grads)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), name


@pytest.mark.parametrize("name", NAMES)
def test_cautious_steps_only_where_they_descend(name):
    """A single step with cautious=True, no decay: every coordinate that moved moved
    against the gradient (Δ·g < 0), and the optimizer still lowers a quadratic."""
    defaults = optim.get(name).defaults
    no_decay = {k: 0.0 for k in defaults if "weight_decay" in k and isinstance(defaults[k], float)}
    shapes = [(8, 6), (6,)]
    for steps in (1, 3):
        params = [p.requires_grad_(True) for p in make_params(shapes)]
        opt = optim.create(name, params, cautious=True, **no_decay)
        g = torch.Generator().manual_seed(3)
        for _ in range(steps):
            before = [p.detach().clone() for p in params]
            grads = [torch.randn(p.shape, generator=g) for p in params]
            for p, gr in zip(params, grads):
                p.grad = gr.clone()
            opt.step()
        for p, b, gr in zip(params, before, grads):
            delta = p.detach() - b
            assert (delta * gr <= 0).all(), f"{name}: a cautious step ascended"
    x = torch.ones(4, 3, requires_grad=True)
    scales = torch.linspace(1.0, 10.0, 12).reshape(4, 3)
    opt = optim.create(name, [x], cautious=True, **{**no_decay, **REFERENCES[name].descent})
    first = float(0.5 * (scales * x.detach() ** 2).sum())
    for _ in range(300):
        opt.zero_grad()
        (0.5 * (scales * x * x).sum()).backward()
        opt.step()
    opt.eval()
    assert float(0.5 * (scales * x.detach() ** 2).sum()) < 0.5 * first, name


def test_fused_true_with_cautious_names_the_option():
    with pytest.raises(ValueError, match="cautious=True"):
        optim.create("rmsprop", [torch.zeros(3, requires_grad=True)], fused=True, cautious=True)


def test_cautious_must_be_a_boolean():
    with pytest.raises(ValueError, match=r"invalid cautious='yes': expected True or False"):
        optim.create("adamw", [torch.zeros(3, requires_grad=True)], cautious="yes")
