"""Muon on any model: 2-D weights by Muon (== torch.optim.Muon), the rest by
AdamW (== torch.optim.AdamW with the adamw_* hyperparameters); one optimizer,
one scheduler, one state_dict."""

from __future__ import annotations

import io
import re

import pytest
import torch

from descentlab import optim
from descentlab.optim import transforms as T

from .problems import make_grads, make_params, rel_diff, run

MIXED = [(6, 5), (6,), (3, 6), (3,), (2, 3, 4), ()]
OTHER = [(6,), (3,), (2, 3, 4), ()]
FALLBACK = {"adamw_lr": 0.01, "adamw_betas": (0.8, 0.99), "adamw_eps": 1e-8, "adamw_weight_decay": 0.05}


def _torch_adamw(params, **hp):
    hp = {**optim.get("muon").defaults, **hp}
    return torch.optim.AdamW(
        params,
        lr=hp["adamw_lr"],
        betas=hp["adamw_betas"],
        eps=hp["adamw_eps"],
        weight_decay=hp["adamw_weight_decay"],
    )


def _torch_muon(params, **hp):
    hp = {**optim.get("muon").defaults, **hp}
    keys = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn")
    return torch.optim.Muon(params, **{k: hp[k] for k in keys})


def _matrix(shapes):
    return [i for i, s in enumerate(shapes) if len(s) == 2]


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("hp", [{}, FALLBACK], ids=["default", "custom"])
def test_non_matrix_params_follow_torch_adamw(hp, foreach):
    grads = make_grads(OTHER)
    ours_p, ref_p = make_params(OTHER), make_params(OTHER)
    ours = optim.create("muon", ours_p, foreach=foreach, **hp)
    ref = _torch_adamw(ref_p, **hp)
    run(ours, ours_p, grads)
    run(ref, ref_p, grads)
    assert [g["use_muon"] for g in ours.param_groups] == [False]
    for a, b in zip(ours_p, ref_p):
        assert rel_diff(a, b) <= 1e-5
        assert set(ours.state[a]) == {"step", "exp_avg", "exp_avg_sq"}
        for key in ("exp_avg", "exp_avg_sq"):
            assert rel_diff(ours.state[a][key], ref.state[b][key]) <= 1e-5


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_mixed_model_matches_muon_plus_adamw_under_steplr(foreach):
    hp = {"lr": 0.02, "weight_decay": 0.01, **FALLBACK}
    grads = make_grads(MIXED)
    ours_p, ref_p = make_params(MIXED), make_params(MIXED)
    ours = optim.create("muon", ours_p, foreach=foreach, **hp)
    assert [g["use_muon"] for g in ours.param_groups] == [True, False]
    assert ours.param_groups[1]["lr"] == FALLBACK["adamw_lr"]
    assert ours.param_groups[1]["weight_decay"] == FALLBACK["adamw_weight_decay"]
    matrices = _matrix(MIXED)
    muon = _torch_muon([ref_p[i] for i in matrices], **hp)
    adamw = _torch_adamw([p for i, p in enumerate(ref_p) if i not in matrices], **hp)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.7) for o in (ours, muon, adamw)]
    for step in grads:
        for p, q, g in zip(ours_p, ref_p, step):
            p.grad, q.grad = g.clone(), g.clone()
        for opt in (ours, muon, adamw):
            opt.step()
        for s in scheds:
            s.step()
    for i, (a, b) in enumerate(zip(ours_p, ref_p)):
        assert rel_diff(a, b) <= 1e-5, f"param {i} of shape {MIXED[i]}"
    assert ours.param_groups[0]["lr"] == pytest.approx(0.02 * 0.7**10)
    assert ours.param_groups[1]["lr"] == pytest.approx(FALLBACK["adamw_lr"] * 0.7**10)
    for i in matrices:
        assert set(ours.state[ours_p[i]]) == {"step", "momentum_buffer"}
        assert torch.equal(ours.state[ours_p[i]]["momentum_buffer"], muon.state[ref_p[i]]["momentum_buffer"])


def test_state_dict_round_trips():
    hp = {"lr": 0.02, **FALLBACK}
    grads = make_grads(MIXED)
    full = make_params(MIXED)
    opt = optim.create("muon", full, **hp)
    run(opt, full, grads)

    half = make_params(MIXED)
    opt = optim.create("muon", half, **hp)
    run(opt, half, grads, stop=50)
    buffer = io.BytesIO()
    torch.save({"params": half, "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params = saved["params"]
    resumed = optim.create("muon", params, **hp)
    resumed.load_state_dict(saved["optimizer"])
    assert [g["use_muon"] for g in resumed.param_groups] == [True, False]
    run(resumed, params, grads, start=50)
    for a, b in zip(params, full):
        assert torch.equal(a, b)


def test_explicit_use_muon_groups_are_kept_whole():
    """Keller Jordan's MuonWithAuxAdam style: the 2-D embedding goes to AdamW."""
    shapes = [(6, 5), (3, 6), (10, 4), (6,)]
    grads = make_grads(shapes)
    ours_p, ref_p = make_params(shapes), make_params(shapes)
    ours = optim.create(
        "muon",
        [
            {"params": ours_p[:2], "use_muon": True, "lr": 0.02},
            {"params": ours_p[2:], "use_muon": False, "lr": 0.003, "weight_decay": 0.01},
        ],
    )
    assert [g["lr"] for g in ours.param_groups] == [0.02, 0.003]
    muon = _torch_muon(ref_p[:2], lr=0.02)
    adamw = _torch_adamw(ref_p[2:], adamw_lr=0.003, adamw_weight_decay=0.01)
    run(ours, ours_p, grads)
    run(muon, ref_p[:2], [g[:2] for g in grads])
    run(adamw, ref_p[2:], [g[2:] for g in grads])
    for a, b in zip(ours_p, ref_p):
        assert rel_diff(a, b) <= 1e-5


def test_conv_filters_go_to_adamw():
    conv = torch.nn.Conv2d(2, 3, 3)
    opt = optim.create("muon", conv.parameters())
    assert [g["use_muon"] for g in opt.param_groups] == [False]


def test_use_muon_with_a_non_matrix_is_rejected():
    message = r"invalid parameter of shape \(3,\) in a group with use_muon=True: expected a 2-D weight"
    with pytest.raises(ValueError, match=message):
        optim.create("muon", [{"params": [torch.zeros(3, 2), torch.zeros(3)], "use_muon": True}])


def test_excluded_params_get_no_adamw_decay():
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.LayerNorm(5))
    opt = optim.create(
        "muon", model.named_parameters(), weight_decay=0.1, adamw_weight_decay=0.1, exclude_from_decay="auto"
    )
    by_kind = {(g["use_muon"], len(g["params"])): g["weight_decay"] for g in opt.param_groups}
    assert by_kind == {(True, 1): 0.1, (False, 3): 0.0}
    opt = optim.create("muon", model.parameters(), adamw_weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.1]


def test_inactive_branch_keeps_no_state():
    params = make_params(MIXED)
    opt = optim.create("muon", params)
    run(opt, params, make_grads(MIXED, steps=2))
    for p in params:
        keys = set(opt.state[p])
        assert keys == ({"step", "momentum_buffer"} if p.ndim == 2 else {"step", "exp_avg", "exp_avg_sq"})


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"adamw_lr": -1.0}, "invalid adamw_lr=-1.0"),
        ({"adamw_betas": (0.9, 1.0)}, "invalid adamw_betas=(0.9, 1.0)"),
        ({"adamw_eps": 0.0}, "invalid adamw_eps=0.0"),
        ({"adamw_weight_decay": -0.1}, "invalid adamw_weight_decay=-0.1"),
        ({"ns_steps": 100}, "invalid ns_steps=100: expected an integer in [0, 100)"),
        ({"ns_coefficients": (1.0, 2.0)}, "invalid ns_coefficients=(1.0, 2.0)"),
        ({"adjust_lr_fn": "rms"}, "invalid adjust_lr_fn='rms'"),
        ({"momentum": 1.0}, "invalid momentum=1.0"),
        ({"nesterov": 1}, "invalid nesterov=1"),
    ],
)
def test_invalid_hyperparameters(hparams, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        optim.create("muon", [torch.zeros(3, 2), torch.zeros(2)], **hparams)


def test_muon_lr_is_checked_even_without_matrices():
    with pytest.raises(ValueError, match=r"invalid lr=-1\.0"):
        optim.create("muon", [torch.zeros(3)], lr=-1.0)


def test_by_group_dispatches_on_the_group_flag():
    """A chain with a per-group branch: Adam where use_adam, plain SGD elsewhere."""
    shapes = [(4,), (3,)]
    grads = make_grads(shapes)
    ours_p, ref_p = make_params(shapes), make_params(shapes)
    branch = T.by_group("use_adam", if_true=[T.scale_by_adam()], if_false=[])
    ours = optim.chain(
        [{"params": ours_p[:1]}, {"params": ours_p[1:], "use_adam": False, "lr": 0.1}], branch, lr=0.01
    )
    adam = torch.optim.Adam(ref_p[:1], lr=0.01)
    sgd = torch.optim.SGD(ref_p[1:], lr=0.1)
    run(ours, ours_p, grads)
    run(adam, ref_p[:1], [g[:1] for g in grads])
    run(sgd, ref_p[1:], [g[1:] for g in grads])
    for a, b in zip(ours_p, ref_p):
        assert rel_diff(a, b) <= 1e-6
    assert set(ours.state[ours_p[1]]) == {"step"}
    assert "use_adam" in repr(ours)
    with pytest.raises(ValueError, match=r"invalid use_adam='no': expected True or False"):
        ours.add_param_group({"params": [torch.zeros(2)], "use_adam": "no"})
