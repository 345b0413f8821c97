"""Composing optimizers from transforms, and the decay exclusion masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descentlab import optim
from descentlab.optim import transforms as T

from .problems import make_grads, make_params, rel_diff, run

SHAPES = [(6, 5), (6,), (3, 6), (3,)]


def test_a_chain_is_a_torch_optimizer():
    opt = optim.chain([torch.zeros(2, requires_grad=True)], T.scale_by_adam(), lr=0.1)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.1
    assert "ScaleByAdam" in repr(opt) and "ScaleByLr" in repr(opt)


def test_clip_then_adamw_equals_torch_clip_grad_norm_then_adamw():
    grads = make_grads(SHAPES)
    ours_p, ref_p = make_params(SHAPES), make_params(SHAPES)
    ours = optim.chain(
        ours_p,
        T.clip_by_global_norm(max_norm=1.0),
        T.scale_by_adam(),
        T.add_decayed_weights(weight_decay=0.05),
        lr=0.01,
    )
    ref = torch.optim.AdamW(ref_p, lr=0.01, weight_decay=0.05)
    for step in grads:
        for p, q, g in zip(ours_p, ref_p, step):
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        torch.nn.utils.clip_grad_norm_(ref_p, 1.0)
        ref.step()
    for a, b in zip(ours_p, ref_p):
        assert rel_diff(a, b) <= 1e-5


def test_chain_hyperparameters_can_be_scheduled_per_group():
    p1, p2 = make_params([(3,), (3,)])
    opt = optim.chain([{"params": [p1]}, {"params": [p2], "lr": 0.0}], T.scale_by_adam(), lr=0.1)
    before = p2.clone()
    p1.grad, p2.grad = torch.ones(3), torch.ones(3)
    opt.step()
    assert torch.equal(p2, before), "a group with lr=0 must not move"
    assert not torch.equal(p1, make_params([(3,), (3,)])[0])


def test_two_transforms_with_their_own_keys_read_their_own_values():
    (p,) = make_params([(4,)])
    opt = optim.chain([p], T.add_l2(keys={"weight_decay": "l2"}, weight_decay=0.5), T.add_decayed_weights(), lr=1.0)
    assert opt.param_groups[0]["l2"] == 0.5 and opt.param_groups[0]["weight_decay"] == 0.0
    start = p.clone()
    p.grad = torch.zeros(4)
    opt.step()
    torch.testing.assert_close(p, start * 0.5)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


@pytest.mark.parametrize(
    "exclude",
    ["auto", ["*.bias", "1.*"], lambda name, p: p.ndim <= 1],
    ids=["auto", "patterns", "callable"],
)
def test_exclude_from_decay_keeps_biases_and_norm_weights(exclude):
    model = _model()
    named = list(model.named_parameters())
    before = {n: p.detach().clone() for n, p in named}
    opt = optim.create("adamw", model.named_parameters(), lr=0.1, weight_decay=0.5, exclude_from_decay=exclude)
    for _, p in named:
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in named:
        if p.ndim <= 1:
            assert torch.equal(p, before[name]), f"{name} should not be decayed"
        else:
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5))
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_exclude_by_pattern_needs_names():
    with pytest.raises(ValueError, match="pass model.named_parameters"):
        optim.create("adamw", _model().parameters(), exclude_from_decay=["*.bias"])


def test_named_parameters_are_kept_in_the_state_dict():
    opt = optim.create("adam", _model().named_parameters())
    assert opt.state_dict()["param_groups"][0]["param_names"][0] == "0.weight"


def test_universal_l2_equals_sgd_weight_decay():
    grads = make_grads(SHAPES, steps=20)
    a, b = make_params(SHAPES), make_params(SHAPES)
    run(optim.create("sgd", a, lr=0.05, l2=0.1), a, grads)
    run(optim.create("sgd", b, lr=0.05, weight_decay=0.1), b, grads)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_universal_decoupled_decay_equals_adamw():
    grads = make_grads(SHAPES, steps=50)
    a, b = make_params(SHAPES), make_params(SHAPES)
    run(optim.create("adam", a, lr=0.01, decoupled_decay=0.1), a, grads)
    run(torch.optim.AdamW(b, lr=0.01, weight_decay=0.1), b, grads)
    for x, y in zip(a, b):
        assert rel_diff(x, y) <= 1e-5


def test_load_state_dict_into_an_optimizer_of_other_hyperparameters_takes_the_saved_ones():
    p = make_params([(3,)])
    opt = optim.create("adam", p, lr=0.5)
    other = optim.create("adam", make_params([(3,)]), lr=0.1)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.5
