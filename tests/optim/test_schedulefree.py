"""adamw_schedulefree: train/eval modes, the eval-mode parameters, and resuming.

The reference matrix (test_reference_matrix.py) compares the train-mode
parameters (y) with schedulefree.AdamWScheduleFree; this file checks what it
cannot: the averaged parameters x seen in eval mode, the mode switches, and
state_dict round trips in either mode.
"""

from __future__ import annotations

import copy

import pytest
import schedulefree
import torch

from descentlab import optim

from .problems import ANY_SHAPES, make_grads, make_params, rel_diff, run

NAME = "adamw_schedulefree"
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
FOREACH = pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
SETTINGS = [
    {},
    {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05, "warmup_steps": 10},
    {"lr": 0.005, "r": 1.0, "weight_lr_power": 1.0},
]


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-9


def _ours(params, foreach=None, **hp):
    return optim.create(NAME, [{"params": params}], foreach=foreach, **hp)


def _reference(params, **hp):
    ref = schedulefree.AdamWScheduleFree([{"params": params}], **{**optim.get(NAME).defaults, **hp})
    ref.train()
    return ref


def _assert_close(ours, ref, tol, what):
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert rel_diff(a, b) <= tol, f"{what} param {i}: {rel_diff(a, b):.2e} > {tol}"


@DTYPES
@FOREACH
def test_eval_then_train_restores_params(dtype, foreach):
    params = make_params(ANY_SHAPES, dtype)
    opt = _ours(params, foreach, lr=0.01)
    run(opt, params, make_grads(ANY_SHAPES, 50, dtype))
    y = [p.clone() for p in params]
    opt.eval()
    assert any(not torch.equal(p, q) for p, q in zip(params, y)), "eval() did not move to x"
    opt.train()
    _assert_close(params, y, 1e-7, "eval→train")


@DTYPES
@FOREACH
@pytest.mark.parametrize("hp", SETTINGS, ids=["default", "decay_warmup", "poly_weights"])
def test_eval_params_match_reference(dtype, foreach, hp):
    grads = make_grads(ANY_SHAPES, dtype=dtype)
    ours_p, ref_p = make_params(ANY_SHAPES, dtype), make_params(ANY_SHAPES, dtype)
    ours, ref = _ours(ours_p, foreach, **hp), _reference(ref_p, **hp)
    # Switch modes mid-run as training with periodic evaluation does.
    for start, stop in [(0, 30), (30, 70), (70, 100)]:
        run(ours, ours_p, grads, start=start, stop=stop)
        run(ref, ref_p, grads, start=start, stop=stop)
        ours.eval()
        ref.eval()
        _assert_close(ours_p, ref_p, _tol(dtype), f"eval after step {stop}")
        ours.train()
        ref.train()
        _assert_close(ours_p, ref_p, _tol(dtype), f"train after step {stop}")
    for p, q in zip(ours_p, ref_p):
        assert rel_diff(ours.state[p]["z"], ref.state[q]["z"]) <= _tol(dtype)


@FOREACH
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_state_dict_round_trip_mid_run(foreach, mode):
    hp = {"lr": 0.01, "weight_decay": 0.01, "warmup_steps": 20}
    grads = make_grads(ANY_SHAPES, dtype=torch.float32)
    whole = make_params(ANY_SHAPES)
    opt = _ours(whole, foreach, **hp)
    run(opt, whole, grads)
    opt.eval()

    first = make_params(ANY_SHAPES)
    opt1 = _ours(first, foreach, **hp)
    run(opt1, first, grads, stop=40)
    if mode == "eval":  # the reference's advice: save checkpoints in eval mode
        opt1.eval()
    saved_params = [p.detach().clone() for p in first]
    saved = copy.deepcopy(opt1.state_dict())
    for key in ("train_mode", "lr_max", "weight_sum", "schedule_free_step"):
        assert key in saved["param_groups"][0], key
    assert saved["param_groups"][0]["schedule_free_step"] == 40

    resumed = [p.clone() for p in saved_params]
    opt2 = _ours(resumed, foreach, **hp)
    opt2.load_state_dict(saved)
    opt2.train()
    run(opt2, resumed, grads, start=40)
    opt2.eval()
    for a, b in zip(resumed, whole):
        assert torch.equal(a, b) or rel_diff(a, b) <= 1e-7


def test_starts_in_train_mode_and_step_in_eval_mode_raises():
    params = make_params(ANY_SHAPES)
    before = [p.clone() for p in params]
    opt = _ours(params)
    opt.eval()  # nothing to switch yet: x = y = z before the first step
    opt.train()
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    run(opt, params, make_grads(ANY_SHAPES, 3))  # no .train() needed
    assert opt.param_groups[0]["train_mode"] is True
    opt.eval()
    assert opt.param_groups[0]["train_mode"] is False
    x = [p.clone() for p in params]
    opt.eval()  # already in eval mode: no change
    assert all(torch.equal(p, q) for p, q in zip(params, x))
    with pytest.raises(RuntimeError, match="train"):
        run(opt, params, make_grads(ANY_SHAPES, 1))
    opt.train()
    run(opt, params, make_grads(ANY_SHAPES, 1))


def test_two_groups_keep_their_own_schedule():
    grads = make_grads(ANY_SHAPES, 60)
    ours_p, ref_p = make_params(ANY_SHAPES), make_params(ANY_SHAPES)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.001, "warmup_steps": 5}]  # noqa: E731
    ours = optim.create(NAME, groups(ours_p), lr=0.01)
    ref = schedulefree.AdamWScheduleFree(groups(ref_p), lr=0.01)
    ref.train()
    run(ours, ours_p, grads)
    run(ref, ref_p, grads)
    ours.eval()
    ref.eval()
    _assert_close(ours_p, ref_p, 1e-5, "two groups, eval")
    for g_ours, g_ref in zip(ours.param_groups, ref.param_groups):
        assert g_ours["weight_sum"] == pytest.approx(g_ref["weight_sum"], rel=1e-12)
        assert g_ours["lr_max"] == g_ref["lr_max"]


@pytest.mark.parametrize(
    "bad",
    [{"betas": (0.0, 0.999)}, {"warmup_steps": -1}, {"warmup_steps": 2.5}, {"r": -1.0},
     {"weight_lr_power": -1.0}, {"eps": 0.0}, {"lr": -0.1}],
)
def test_invalid_hyperparameters(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        optim.create(NAME, make_params(ANY_SHAPES), **bad)
