"""Gradient clipping equals torch's utilities and the AGC rule."""

from __future__ import annotations

import pytest
import torch
from pytorch_optimizer.optimizer.agc import agc as reference_agc

from descentlab import optim
from descentlab.optim import transforms as T

from .problems import make_grads, make_params

SHAPES = [(6, 5), (6,), (3, 6, 2, 2), (3,)]


def _clip_once(transform, foreach, grads, params=None):
    params = params or make_params(SHAPES)
    opt = optim.chain(params, transform, lr=1.0, foreach=foreach)
    before = [p.clone() for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    # With lr=1 the step is exactly -clipped gradient.
    return [b - p for p, b in zip(params, before)], opt


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
def test_clip_by_global_norm_equals_clip_grad_norm(foreach, max_norm):
    grads = make_grads(SHAPES, steps=1)[0]
    clip = T.clip_by_global_norm(max_norm=max_norm)
    ours, _ = _clip_once(clip, foreach, grads)
    ref = [g.clone() for g in grads]
    holders = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for h, g in zip(holders, ref):
        h.grad = g
    total = torch.nn.utils.clip_grad_norm_(holders, max_norm)
    for a, h in zip(ours, holders):
        torch.testing.assert_close(a, h.grad, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(clip.last_norm, total)  # reported for logging


@pytest.mark.parametrize("foreach", [False, True])
def test_clip_by_value_equals_clip_grad_value(foreach):
    grads = [g * 3 for g in make_grads(SHAPES, steps=1)[0]]
    ours, _ = _clip_once(T.clip_by_value(clip_value=1.5), foreach, grads)
    holders = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for h, g in zip(holders, grads):
        h.grad = g.clone()
    torch.nn.utils.clip_grad_value_(holders, 1.5)
    for a, h in zip(ours, holders):
        torch.testing.assert_close(a, h.grad, rtol=1e-6, atol=1e-7)
    assert max(float(a.abs().max()) for a in ours) <= 1.5 + 1e-6  # rounding of p − (p − u)


@pytest.mark.parametrize("foreach", [False, True])
def test_adaptive_clip_equals_the_agc_rule(foreach):
    """pytorch_optimizer's agc as the reference, on 1-D, 2-D and 4-D tensors.
    (For 3-D tensors it takes the norm over dim 1 only; we take it over every
    dim but the output one, the per-unit norm of Brock et al. 2021.)"""
    params = make_params(SHAPES)
    grads = [g * 0.5 for g in make_grads(SHAPES, steps=1)[0]]
    ours, _ = _clip_once(T.adaptive_clip(clipping=0.05), foreach, grads, params=[p.clone() for p in params])
    clipped_some = False
    for a, p, g in zip(ours, params, grads):
        want = reference_agc(p, g, agc_eps=1e-3, agc_clip_val=0.05)
        torch.testing.assert_close(a, want, rtol=1e-6, atol=1e-7)
        clipped_some |= not torch.equal(want, g)
    assert clipped_some, "the test should exercise clipping"


def test_clipping_in_front_of_a_named_optimizer_chain():
    params = make_params(SHAPES)
    opt = optim.chain(params, T.clip_by_global_norm(max_norm=1.0), T.scale_by_adam(), lr=0.01)
    grads = make_grads(SHAPES, steps=3)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g * 1e6  # huge gradients: clipped before Adam
        opt.step()
    assert all(torch.isfinite(p).all() for p in params)
