"""Muon on any model: 2-D weights by Muon (== torch.optim.Muon), the rest by
AdamW (== torch.optim.AdamW with the adamw_* hyperparameters); one optimizer,
one scheduler, one state_dict."""

from __future__ import annotations

import io
import math
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


# -- tensors with more than two dimensions (nd="flatten") ------------------------------

CONVS = [(4, 3, 3, 3), (16, 2, 3, 3), (5, 2, 2)]


def _orthogonalized_by_torch(u: torch.Tensor) -> torch.Tensor:
    from torch.optim._muon import _zeropower_via_newtonschulz

    return _zeropower_via_newtonschulz(u, optim.get("muon").defaults["ns_coefficients"], 5, 1e-7).to(u.dtype)


@pytest.mark.parametrize("shape", CONVS, ids=str)
def test_orthogonalized_nd_update_is_torch_muons_on_the_flat_view(shape):
    u = make_grads([shape], steps=1)[0][0]
    ours = T.orthogonalize_via_newton_schulz().update_tensor(u, u, {}, optim.get("muon").defaults)
    assert ours.shape == u.shape
    assert torch.equal(ours.reshape(shape[0], -1), _orthogonalized_by_torch(u.reshape(shape[0], -1)))


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("shape", CONVS, ids=str)
def test_flattened_nd_weights_follow_torch_muon_on_the_flat_view(shape, foreach):
    hp = {"lr": 0.02, "weight_decay": 0.01, "momentum": 0.9}
    grads = make_grads([shape])
    flat = [(shape[0], math.prod(shape[1:]))]
    ours_p, view_p = make_params([shape]), [p.reshape(flat[0]) for p in make_params([shape])]
    ours = optim.create("muon", ours_p, foreach=foreach, nd="flatten", **hp)
    assert [g["use_muon"] for g in ours.param_groups] == [True]
    # Our Muon on the 2-D view of the same tensor: bit for bit.
    on_view = optim.create("muon", view_p, foreach=foreach, **hp)
    ref_p = [p.clone() for p in view_p]
    torch_muon = _torch_muon(ref_p, **hp)
    run(ours, ours_p, grads)
    run(on_view, view_p, [[g.reshape(flat[0]) for g in step] for step in grads])
    run(torch_muon, ref_p, [[g.reshape(flat[0]) for g in step] for step in grads])
    assert torch.equal(ours_p[0].reshape(flat[0]), view_p[0])
    mine = ours.state[ours_p[0]]["momentum_buffer"]
    assert torch.equal(mine.reshape(flat[0]), torch_muon.state[ref_p[0]]["momentum_buffer"])
    # torch.optim.Muon on the flat view: its update (the lr adjustment from the
    # flattened shape), to float32 rounding of −lr·O + decay (the chain's arithmetic).
    assert rel_diff(ours_p[0].reshape(flat[0]), ref_p[0]) <= 1e-5


def test_nd_flatten_routes_conv_kernels_to_muon_and_keeps_the_rest_on_adamw():
    conv = torch.nn.Conv2d(2, 3, 3)
    opt = optim.create("muon", conv.parameters(), nd="flatten")
    assert [(g["use_muon"], [tuple(p.shape) for p in g["params"]]) for g in opt.param_groups] == [
        (True, [(3, 2, 3, 3)]),
        (False, [(3,)]),
    ]
    # Per group: the conv kernel of the second group stays on AdamW.
    other = torch.nn.Conv2d(2, 3, 3)
    opt = optim.create("muon", [{"params": conv.parameters(), "nd": "flatten"}, {"params": other.parameters()}])
    assert [(g["use_muon"], len(g["params"])) for g in opt.param_groups] == [(True, 1), (False, 1), (False, 2)]
    # An explicit use_muon=True group takes a conv kernel under nd="flatten" only.
    optim.create("muon", [{"params": [conv.weight], "use_muon": True, "nd": "flatten"}])
    with pytest.raises(ValueError, match=r"shape \(3, 2, 3, 3\) in a group with use_muon=True and nd='adamw'"):
        optim.create("muon", [{"params": [conv.weight], "use_muon": True}])


def test_nd_is_validated():
    with pytest.raises(ValueError, match=r"^invalid nd='conv': expected one of 'adamw', 'flatten'"):
        optim.create("muon", [torch.zeros(3, 2)], nd="conv")
    with pytest.raises(ValueError, match=r"^invalid nd=2"):
        optim.create("muon", [{"params": [torch.zeros(3, 2, 2)], "nd": 2}])


# -- split: fused QKV / per-head matrices ------------------------------------------------


def _blocks(t: torch.Tensor, rows) -> list[torch.Tensor]:
    return [b.clone() for b in t.split(rows)]


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_split_qkv_equals_three_separate_weights(adjust_lr_fn, foreach):
    d = 8
    hp = {"lr": 0.02, "weight_decay": 0.01, "adjust_lr_fn": adjust_lr_fn}
    grads = make_grads([(3 * d, d)])
    fused = make_params([(3 * d, d)])
    separate = _blocks(fused[0], d)
    ref_p = _blocks(fused[0], d)
    ours = optim.create("muon", [{"params": fused, "split": 3}], foreach=foreach, **hp)
    apart = optim.create("muon", separate, foreach=foreach, **hp)
    torch_muon = _torch_muon(ref_p, **hp)
    run(ours, fused, grads)
    run(apart, separate, [_blocks(step[0], d) for step in grads])
    run(torch_muon, ref_p, [_blocks(step[0], d) for step in grads])
    # Bit for bit our Muon on the three weights; the orthogonalization and the
    # momentum bit for bit torch.optim.Muon's, the step to float32 rounding.
    assert torch.equal(fused[0], torch.cat(separate))
    buf = ours.state[fused[0]]["momentum_buffer"]
    assert torch.equal(buf, torch.cat([apart.state[p]["momentum_buffer"] for p in separate]))
    assert torch.equal(buf, torch.cat([torch_muon.state[p]["momentum_buffer"] for p in ref_p]))
    assert rel_diff(fused[0], torch.cat(ref_p)) <= 1e-5
    u = make_grads([(3 * d, d)], steps=1)[0][0]
    o = T.orthogonalize_via_newton_schulz().update_tensor(u, u, {}, {**optim.get("muon").defaults, "split": 3})
    assert torch.equal(o, torch.cat([_orthogonalized_by_torch(b) for b in _blocks(u, d)]))


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_split_into_unequal_blocks_and_nd(foreach):
    """Row counts [8, 4, 4] (e.g. grouped-query attention), and a 3-D tensor cut
    into blocks of its flattened rows: each as a separate weight."""
    cases = [((16, 6), [8, 4, 4]), ((12, 2, 3), 3)]
    for shape, split in cases:
        rows = split if isinstance(split, list) else [shape[0] // split] * split
        hp = {"lr": 0.02, "weight_decay": 0.01, "nd": "flatten"}
        grads = make_grads([shape])
        fused = make_params([shape])
        separate = _blocks(fused[0], rows)
        ours = optim.create("muon", [{"params": fused, "split": split}], foreach=foreach, **hp)
        apart = optim.create("muon", separate, foreach=foreach, **hp)
        run(ours, fused, grads)
        run(apart, separate, [_blocks(step[0], rows) for step in grads])
        assert torch.equal(fused[0], torch.cat(separate)), (shape, split)


@pytest.mark.parametrize(
    "split,message",
    [
        (5, "invalid split=5: a weight of shape (12, 4) has 12 rows, which do not divide into 5 equal blocks"),
        ([8, 8], "invalid split=[8, 8]: the row counts add up to 16, but a weight of shape (12, 4) has 12 rows"),
        (0, "invalid split=0: expected None, an integer k >= 1"),
        ("qkv", "invalid split='qkv': expected None, an integer k >= 1"),
        ([4, 0, 8], "invalid split=[4, 0, 8]: expected None"),
    ],
)
def test_split_is_validated_against_the_rows(split, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        optim.create("muon", [{"params": [torch.zeros(12, 4), torch.zeros(4)], "split": split}])


def test_split_is_checked_at_the_step_too():
    opt = optim.create("muon", [torch.zeros(12, 4)], foreach=False)
    opt.param_groups[0]["split"] = 5
    opt.param_groups[0]["params"][0].grad = torch.ones(12, 4)
    with pytest.raises(ValueError, match=r"^invalid split=5: a weight of shape \(12, 4\)"):
        opt.step()


# -- normuon: the same split into groups, N-D tensors flattened by default ----------------

NOR_MIXED = [(6, 5), (6,), (4, 3, 2, 2), (3,), (3, 6), ()]


def _reference_normuon(params, **hp):
    from pytorch_optimizer import NorMuon

    hp = {**optim.get("normuon").defaults, **hp}
    hp.pop("nd"), hp.pop("ns_eps")
    muon = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return NorMuon([{"params": muon, "use_muon": True}, {"params": rest, "use_muon": False}], foreach=False, **hp)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize(
    "hp",
    [{}, {"weight_decay": 0.05, "adamw_wd": 0.01, "update_scale": "match_rms", "lr": 0.01}],
    ids=["default", "custom"],
)
def test_normuon_with_conv_kernels_follows_pytorch_optimizer(hp, foreach):
    grads = make_grads(NOR_MIXED)
    ours_p, ref_p = make_params(NOR_MIXED), make_params(NOR_MIXED)
    ours = optim.create("normuon", ours_p, foreach=foreach, **hp)
    assert [(g["use_muon"], len(g["params"])) for g in ours.param_groups] == [(True, 3), (False, 3)]
    ref = _reference_normuon(ref_p, **hp)
    run(ours, ours_p, grads)
    run(ref, ref_p, grads)
    for i, (a, b) in enumerate(zip(ours_p, ref_p)):
        assert rel_diff(a, b) <= 1e-5, f"param {i} of shape {NOR_MIXED[i]}"
    conv = ours_p[2]
    assert set(ours.state[conv]) == {"step", "momentum_buffer", "second_momentum_buffer"}
    assert ours.state[conv]["second_momentum_buffer"].shape == (4, 1)
    assert rel_diff(ours.state[conv]["second_momentum_buffer"], ref.state[ref_p[2]]["second_momentum_buffer"]) <= 1e-5


def test_normuon_nd_adamw_and_explicit_groups():
    conv = torch.nn.Conv2d(2, 3, 3)
    opt = optim.create("normuon", conv.parameters(), nd="adamw")
    assert [g["use_muon"] for g in opt.param_groups] == [False]
    assert opt.param_groups[0]["lr"] == 3e-4
    opt = optim.create(
        "normuon",
        [{"params": [conv.weight], "use_muon": True}, {"params": [conv.bias], "use_muon": False, "lr": 1e-3}],
        adamw_wd=0.1,
    )
    assert [(g["use_muon"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(True, 0.02, 0.0), (False, 1e-3, 0.1)]
    with pytest.raises(ValueError, match=r"invalid parameter of shape \(3,\) in a group with use_muon=True"):
        optim.create("normuon", [{"params": [conv.bias], "use_muon": True}])


def test_normuon_state_dict_round_trips():
    hp = {"lr": 0.02, "weight_decay": 0.01}
    grads = make_grads(NOR_MIXED)
    full = make_params(NOR_MIXED)
    run(optim.create("normuon", full, **hp), full, grads)
    half = make_params(NOR_MIXED)
    opt = optim.create("normuon", half, **hp)
    run(opt, half, grads, stop=50)
    buffer = io.BytesIO()
    torch.save({"params": half, "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params = saved["params"]
    resumed = optim.create("normuon", params, **hp)
    resumed.load_state_dict(saved["optimizer"])
    run(resumed, params, grads, start=50)
    for a, b in zip(params, full):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"update_scale": "rms"}, "invalid update_scale='rms': expected one of 'preserve_norm', 'match_rms'"),
        ({"beta2": 1.0}, "invalid beta2=1.0"),
        ({"eps": 0.0}, "invalid eps=0.0"),
        ({"ns_coeffs": "cubic"}, "invalid ns_coeffs='cubic'"),
        ({"ns_coeffs": [(1.0, 2.0, 3.0), (1.0, 2.0)]}, "invalid ns_coeffs=[(1.0, 2.0, 3.0), (1.0, 2.0)]"),
        ({"ns_eps": 0.0}, "invalid ns_eps=0.0"),
        ({"adamw_wd": -0.1}, "invalid adamw_wd=-0.1"),
        ({"weight_decouple": "yes"}, "invalid weight_decouple='yes'"),
        ({"use_adjusted_lr": 1}, "invalid use_adjusted_lr=1"),
        ({"nd": "conv"}, "invalid nd='conv'"),
    ],
)
def test_normuon_invalid_hyperparameters(hparams, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        optim.create("normuon", [torch.zeros(3, 2), torch.zeros(2)], **hparams)


def test_normuon_has_no_split():
    with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) \['split'\]"):
        optim.create("normuon", [torch.zeros(3, 2)], split=3)


# -- DTensor shards (FSDP2's layout: split on dim 0, uneven, one empty) ---------------------

SHARDED_STEPS = 30
SHARDED_SHAPES = [(5, 2, 3, 3), (9, 4), (9, 4), (1, 4), (7, 4), (4,)]


def _sharded_groups(name: str, params: list) -> list[dict]:
    conv, qkv, gqa, row, plain, bias = params
    if name == "muon":
        return [
            {"params": [conv, row], "nd": "flatten"},
            {"params": [qkv], "split": 3},  # blocks of 3 rows over shards of 5 + 4 rows
            {"params": [gqa], "split": [6, 3]},
            {"params": [plain, bias]},
        ]
    return [{"params": params}]


#: label -> (optimizer, hyperparameters); each runs with foreach False and True.
SHARDED_CASES = {
    "muon": ("muon", {"lr": 0.02, "weight_decay": 0.01}),
    "normuon": ("normuon", {"weight_decay": 0.01}),
    "normuon-match_rms": ("normuon", {"update_scale": "match_rms", "use_adjusted_lr": True, "beta2": 0.5}),
}


def _train(name, hp, foreach, params, to_grad):
    opt = optim.create(name, _sharded_groups(name, params), foreach=foreach, **hp)
    for step in make_grads(SHARDED_SHAPES, steps=SHARDED_STEPS):
        for p, g in zip(params, step):
            p.grad = to_grad(g)
        opt.step()
    return opt


def _sharded_worker(rank: int, store: str, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from ..distributed.group import finish, join

    join(rank, store)
    mesh = init_device_mesh("cpu", (2,))
    results = {}
    for label, (name, hp) in SHARDED_CASES.items():
        for foreach in (False, True):
            params = [distribute_tensor(p, mesh, [Shard(0)]) for p in make_params(SHARDED_SHAPES)]
            opt = _train(name, hp, foreach, params, lambda g: distribute_tensor(g, mesh, [Shard(0)]))
            layouts = {  # the conv kernel's state
                key: (tuple(v.shape), [type(pl).__name__ for pl in v.placements])
                for key, v in opt.state[params[0]].items()
                if hasattr(v, "placements")
            }
            results[label, foreach] = {"params": [p.full_tensor() for p in params], "layouts": layouts}
    if rank == 0:
        torch.save(results, out)
    finish()


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("sharded_muon")
    out = root / "results.pt"
    mp.spawn(_sharded_worker, args=(str(root / "store"), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("label", list(SHARDED_CASES))
def test_sharded_nd_split_and_row_statistics_equal_one_process(sharded_runs, label, foreach):
    """conv kernels (N-D, 3 + 2 rows), splits whose blocks straddle the shards, a
    1-row weight (one rank's shard empty), and NorMuon's per-row statistics and
    norms on shards equal the 1-process step."""
    name, hp = SHARDED_CASES[label]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = make_params(SHARDED_SHAPES)
        _train(name, hp, foreach, params, lambda g: g)
    finally:
        torch.set_num_threads(threads)
    got = sharded_runs[label, foreach]
    # Bit for bit: the gathers are exact, the rest is elementwise or per row, and
    # NorMuon's norms sum the gathered rows' sums of squares in one order.
    for i, (a, b) in enumerate(zip(got["params"], params)):
        assert torch.equal(a, b), f"param {i} of shape {SHARDED_SHAPES[i]}: {rel_diff(a, b):.1e}"
    assert got["layouts"]["momentum_buffer"] == ((5, 2, 3, 3), ["Shard"])
    if name == "normuon":
        assert got["layouts"]["second_momentum_buffer"] == ((5, 1), ["Shard"])


# -- the fused kernel (fused/cpu_kernels.muon) with the new options -------------------------


def _fused_vs_chain(groups_of, shapes, **hp):
    from descentlab.optim.fused import build

    if build.available() is not None:
        pytest.skip(f"C++ kernels unavailable: {build.available()}")
    grads = make_grads(shapes, steps=20)
    runs = []
    for fused in (None, False):
        params = make_params(shapes)
        opt = optim.create("muon", groups_of(params), fused=fused, **hp)
        run(opt, params, grads)
        runs.append(params)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_fused_kernel_flattens_nd_weights_as_the_chain():
    """The kernel's Newton–Schulz (newton_schulz_bf16_) and lr adjustment are the
    chain's functions, which flatten an N-D tensor: nd="flatten" needs nothing more."""
    _fused_vs_chain(lambda ps: ps, [(4, 3, 3, 3), (6, 5)], nd="flatten", lr=0.02, weight_decay=0.01)


def test_split_with_default_options_equals_the_chain():
    """The kernel does not split: it must decline a group with ``split``
    (the check in fused/__init__.py), so that the chain steps it."""
    _fused_vs_chain(lambda ps: [{"params": ps, "split": 3}], [(12, 4)], lr=0.02)
