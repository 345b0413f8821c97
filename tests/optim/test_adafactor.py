"""Adafactor beyond the reference matrix: tensors with more than two dimensions
(factored over the last two), scalars, the state's shapes, and ``eps`` pairs."""

from __future__ import annotations

import re

import pytest
import torch

from descentlab import optim

from .problems import make_grads, make_params, rel_diff, run

SHAPES = [(2, 3, 4), (), (5, 1), (1, 5), (4,), (2, 2, 3, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("hp", [{}, {"lr": 0.05, "weight_decay": 0.01, "d": 1.2}], ids=["default", "custom"])
def test_any_shape_matches_torch(hp, foreach, dtype):
    grads = make_grads(SHAPES, dtype=dtype)
    ours_p, ref_p = make_params(SHAPES, dtype), make_params(SHAPES, dtype)
    ours = optim.create("adafactor", ours_p, foreach=foreach, **hp)
    ref = torch.optim.Adafactor(ref_p, **hp)
    run(ours, ours_p, grads)
    run(ref, ref_p, grads)
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    for a, b in zip(ours_p, ref_p):
        assert rel_diff(a, b) <= tol
        for key, want in ref.state[b].items():
            if key != "step":
                assert ours.state[a][key].shape == want.shape, key
                assert rel_diff(ours.state[a][key], want) <= tol, key


def test_state_is_factored_over_the_last_two_dimensions():
    p = torch.zeros(2, 3, 4, requires_grad=True)
    v = torch.zeros(4, requires_grad=True)
    opt = optim.create("adafactor", [p, v])
    p.grad, v.grad = torch.ones(2, 3, 4), torch.ones(4)
    opt.step()
    assert opt.state[p]["row_var"].shape == (2, 3, 1)
    assert opt.state[p]["col_var"].shape == (2, 1, 4)
    assert "variance" not in opt.state[p]
    assert opt.state[v]["variance"].shape == (4,)
    assert "row_var" not in opt.state[v]


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"eps": 1e-3}, "invalid eps=0.001: expected a pair (eps1, eps2)"),
        ({"eps": (0.0, 1e-3)}, "invalid eps=(0.0, 0.001)"),
        ({"eps": (None, -1.0)}, "invalid eps=(None, -1.0)"),
        ({"eps": (None, float("nan"))}, "invalid eps=(None, nan)"),
        ({"beta2_decay": 0.5}, "invalid beta2_decay=0.5: expected a finite number <= 0"),
        ({"d": 0.5}, "invalid d=0.5: expected a finite number >= 1"),
        ({"weight_decay": -0.1}, "invalid weight_decay=-0.1"),
    ],
)
def test_invalid_hyperparameters(hparams, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        optim.create("adafactor", [torch.zeros(3, 2), torch.zeros(2)], **hparams)


def test_eps_as_a_list_is_accepted():
    (p,) = make_params([(3, 2)])
    opt = optim.create("adafactor", [p], eps=[1e-30, 1e-3])
    p.grad = torch.ones(3, 2)
    opt.step()
    assert torch.isfinite(p).all()
