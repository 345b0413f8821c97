"""prodigy: the distance estimate d, step by step, and resuming mid-run.

The reference matrix compares the parameters after 100 steps; with the default
d0 = 1e-6 they barely move, so this file also compares d itself and the
displacement from the initial parameters at every step.
"""

from __future__ import annotations

import copy

import pytest
import torch

from descentlab import optim

from .problems import ANY_SHAPES, make_grads, make_params, rel_diff, run
from .refs.prodigy import prodigy_reference

NAME = "prodigy"
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
FOREACH = pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
SETTINGS = [
    {},
    {"d0": 1e-3, "weight_decay": 0.1},
    {"d0": 1e-2, "growth_rate": 1.05, "bias_correction": True, "fixed_decay": True, "weight_decay": 0.01},
    {"d0": 1e-4, "safeguard_warmup": True, "beta3": 0.9, "d_coef": 2.0},
    {"d0": 1e-3, "weight_decay": 0.01, "weight_decouple": False, "eps": None},
]


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-9


def _ours(groups, foreach=None, **hp):
    return optim.create(NAME, groups, foreach=foreach, **hp)


@DTYPES
@FOREACH
@pytest.mark.parametrize("hp", SETTINGS, ids=["default", "decoupled", "growth_bias_fixed", "safeguard", "coupled_atan2"])
def test_d_and_displacement_match_reference(dtype, foreach, hp):
    grads = make_grads(ANY_SHAPES, dtype=dtype)
    start = make_params(ANY_SHAPES, dtype)
    ours_p, ref_p = make_params(ANY_SHAPES, dtype), make_params(ANY_SHAPES, dtype)
    ours = _ours([{"params": ours_p}], foreach, **hp)
    ref = prodigy_reference([{"params": ref_p}], **{**optim.get(NAME).defaults, **hp})
    tol = _tol(dtype)
    grew = False
    for step in range(len(grads)):
        run(ours, ours_p, grads, start=step, stop=step + 1)
        run(ref, ref_p, grads, start=step, stop=step + 1)
        d_ours, d_ref = ours.param_groups[0]["d"], ref.param_groups[0]["d"]
        assert abs(d_ours - d_ref) <= tol * d_ref, f"step {step}: d {d_ours} vs {d_ref}"
        grew |= d_ref > ref.param_groups[0]["d0"]
        for i, (a, b, p0) in enumerate(zip(ours_p, ref_p, start)):
            diff = rel_diff(a - p0, b - p0)
            assert diff <= tol, f"step {step}, param {i}: displacement {diff:.2e} > {tol}"
    assert grew, "d never grew: the test would not exercise the estimate"


@FOREACH
def test_state_dict_round_trip_mid_run(foreach):
    hp = {"d0": 1e-3, "weight_decay": 0.01, "growth_rate": 1.1}
    grads = make_grads(ANY_SHAPES)
    whole = make_params(ANY_SHAPES)
    run(_ours([{"params": whole}], foreach, **hp), whole, grads)

    first = make_params(ANY_SHAPES)
    opt1 = _ours([{"params": first}], foreach, **hp)
    run(opt1, first, grads, stop=60)
    saved = copy.deepcopy(opt1.state_dict())
    group = saved["param_groups"][0]
    for key in ("d", "d_max", "d_numerator", "prodigy_step"):
        assert key in group, key
    assert group["prodigy_step"] == 60 and group["d"] > hp["d0"]

    resumed = [p.detach().clone() for p in first]
    opt2 = _ours([{"params": resumed}], foreach, **hp)
    opt2.load_state_dict(saved)
    run(opt2, resumed, grads, start=60)
    for a, b in zip(resumed, whole):
        assert torch.equal(a, b)


def test_two_groups_have_their_own_d():
    grads = make_grads(ANY_SHAPES)
    params = make_params(ANY_SHAPES)
    both = _ours([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], d0=1e-3)
    run(both, params, grads)
    for sl, lr, group in ((slice(0, 2), 1.0, both.param_groups[0]), (slice(2, 4), 0.5, both.param_groups[1])):
        alone_p = make_params(ANY_SHAPES)[sl]
        alone = _ours([{"params": alone_p}], d0=1e-3, lr=lr)
        run(alone, alone_p, [g[sl] for g in grads])
        assert group["d"] == alone.param_groups[0]["d"]
        for a, b in zip(params[sl], alone_p):
            assert torch.equal(a, b)


def test_zero_gradients_leave_params_and_d_unchanged():
    params = make_params(ANY_SHAPES)
    before = [p.clone() for p in params]
    opt = _ours([{"params": params}])
    zeros = [[torch.zeros_like(p) for p in params] for _ in range(5)]
    run(opt, params, zeros)
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    assert opt.param_groups[0]["d"] == 1e-6


@pytest.mark.parametrize(
    "bad",
    [{"growth_rate": 0.5}, {"beta3": 1.0}, {"eps": 0.0}, {"d0": 0.0}, {"d_coef": -1.0},
     {"weight_decay": -0.1}, {"lr": -1.0}, {"betas": (0.9, 1.0)}, {"fixed_decay": 1}],
)
def test_invalid_hyperparameters(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        optim.create(NAME, make_params(ANY_SHAPES), **bad)
