"""PSGD Kron beyond the reference matrix: float64 factors (the matrix's float64
cases keep the reference's float32 factors), 0-D/3-D/4-D tensors, factor
types, the update schedule, exact resume (the generators included), and the
seeded randomness."""

from __future__ import annotations

import io

import pytest
import torch

from descentlab import optim
from descentlab.optim.chain import walk
from descentlab.optim.transforms.kron import (
    ScaleByKron,
    norm_lower_bound,
    triangular_dims,
)

from .problems import make_grads, make_params, rel_diff, run
from .refs.kron import _VARIANTS, SeededKron

SHAPES_ND = [(3, 4, 5), (2, 3, 2, 2), (), (4, 1, 3), (5,)]


def _pair(shapes, dtype=torch.float32, foreach=False, **hp):
    full = {**optim.get("kron").defaults, **hp}
    ours_p, ref_p = make_params(shapes, dtype), make_params(shapes, dtype)
    ours = optim.create("kron", ours_p, foreach=foreach, **hp)
    ref = SeededKron([{"params": ref_p}], **full)
    return ours, ours_p, ref, ref_p


def _factors(opt, p):
    """The factors Q_i of ``p``, read as the transform reads them."""
    kron = next(t for t in walk(opt.transforms) if isinstance(t, ScaleByKron))
    group = next(g for g in opt.param_groups if any(q is p for q in g["params"]))
    return kron._factors(dict(opt.state[p]), list(p.shape), group, p.dtype)[0]


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("hp", [{}, *_VARIANTS], ids=["default", *[f"variant{i}" for i in range(len(_VARIANTS))]])
def test_float64_factors_match_the_reference_to_1e_12(hp, foreach):
    """With precondition_dtype=float64 the whole rule runs in float64 (but the
    triangular solves, float32 in both), and equals the reference to ~1e-16."""
    shapes = [(6, 5), (6,), (3, 6), (3,)]
    hp = {**hp, "precondition_dtype": torch.float64}
    ours, ours_p, ref, ref_p = _pair(shapes, torch.float64, foreach, **hp)
    grads = make_grads(shapes, dtype=torch.float64)
    run(ours, ours_p, grads)
    run(ref, ref_p, grads)
    for a, b in zip(ours_p, ref_p):
        assert rel_diff(a, b) <= 1e-12
    for a, b in zip(ours_p, ref_p):
        for q, r in zip(_factors(ours, a), ref.state[b]["Q"]):
            assert rel_diff(q, r) <= 1e-12


@pytest.mark.parametrize(
    "hp",
    [
        {"pre_conditioner_update_probability": 1.0, "balance_prob": 0.5},
        {"pre_conditioner_update_probability": 0.2, "weight_decay": 0.1, "weight_decouple": False},
        {"memory_save_mode": "one_diag", "pre_conditioner_update_probability": 1.0, "momentum": 0.0},
        {"max_size_triangular": 3, "pre_conditioner_update_probability": 0.5, "maximize": True},
        {"min_ndim_triangular": 4, "pre_conditioner_update_probability": 1.0},
        {"momentum_into_precondition_update": False, "pre_conditioner_update_probability": 1.0},
        {"mu_dtype": torch.float64, "pre_conditioner_update_probability": 1.0},
    ],
)
def test_nd_tensors_match_the_reference(hp):
    """Both chain paths (for-loop and foreach) against one run of the reference."""
    _, _, ref, ref_p = _pair(SHAPES_ND, torch.float32, lr=3e-3, **hp)
    grads = make_grads(SHAPES_ND)
    run(ref, ref_p, grads)
    for foreach in (False, True):
        ours, ours_p, _, _ = _pair(SHAPES_ND, torch.float32, foreach, lr=3e-3, **hp)
        run(ours, ours_p, grads)
        for a, b in zip(ours_p, ref_p):
            assert rel_diff(a, b) <= 1e-5, f"foreach={foreach}"
        for a, b in zip(ours_p, ref_p):
            for q, r in zip(_factors(ours, a), ref.state[b]["Q"]):
                assert q.shape == r.shape
                assert rel_diff(q, r) <= 1e-5, f"foreach={foreach}"


def test_factor_types():
    assert triangular_dims([6, 5], 8192, 2, None) == [True, True]
    assert triangular_dims([6], 8192, 2, None) == [False]
    assert triangular_dims([1, 7], 8192, 2, None) == [False, True]
    assert triangular_dims([6, 5], 5, 2, None) == [False, True]
    assert triangular_dims([4, 4], 8192, 2, "one_diag") == [True, False]  # the last of equal sizes
    assert triangular_dims([4, 4], 8192, 2, "smart_one_diag") == [True, True]
    assert triangular_dims([3, 8, 8, 2], 8192, 2, "smart_one_diag") == [True, True, True, True]
    assert triangular_dims([3, 9, 8], 8192, 2, "smart_one_diag") == [True, False, True]
    assert triangular_dims([3, 9], 8192, 2, "all_diag") == [False, False]
    assert triangular_dims([3, 9, 8], 8192, 4, None) == [False, False, False]


def test_norm_lower_bound_is_a_close_lower_bound():
    g = torch.Generator().manual_seed(0)
    for n in (1, 5, 40):
        x = torch.randn(n, n, generator=g, dtype=torch.float64)
        a = x @ x.T
        exact = torch.linalg.matrix_norm(a, ord=2)
        bound = norm_lower_bound(a)
        assert bound <= exact * (1 + 1e-12)
        assert bound >= exact / 2
    assert norm_lower_bound(torch.zeros(3, 3)) == 0


@pytest.mark.parametrize("prob,every", [(1.0, 1), (0.5, 2), (0.3, 4), (0.1, 10), (0.0, None)])
def test_the_update_schedule_is_the_reference_counter(prob, every):
    """Updated when the steps since the last update reach 1/prob: prob 0.3 every 4th step."""
    p = torch.zeros(3, 2, requires_grad=True)
    opt = optim.create("kron", [p], pre_conditioner_update_probability=prob)
    updated = []
    for t in range(1, 31):
        before = [q.clone() for q in _factors(opt, p)] if opt.state[p] else None
        p.grad = torch.ones(3, 2)
        opt.step()
        after = _factors(opt, p)
        updated.append(before is None and not torch.equal(after[0], torch.eye(3)) or
                       before is not None and not all(torch.equal(a, b) for a, b in zip(before, after)))
    expected = [every is not None and t % every == 0 for t in range(1, 31)]
    assert updated == expected


def test_default_schedule_updates_every_step_then_decays():
    """prob = clamp(exp(−0.001·(t − 500)), 0.03, 1) with t the steps taken: every
    step up to t = 500; at t = 501, 1/prob = 1.001 > 1, so that step is skipped."""
    p = torch.zeros(2, 2, requires_grad=True)
    opt = optim.create("kron", [p])
    counters = []
    for _ in range(520):
        p.grad = torch.randn(2, 2)
        opt.step()
        counters.append(opt.state[p]["update_counter"])
    assert counters[:501] == [0] * 501
    assert counters[501:505] == [1, 0, 1, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("prob", [0.1, None])
def test_state_dict_resumes_bit_for_bit_between_updates(prob, dtype):
    """Saved at step 47 (mid-way between two factor updates with prob 0.1),
    reloaded into a new optimizer through torch.save/load(weights_only=True):
    the next 53 steps equal the uninterrupted run bit for bit, factors and
    generator state included (a bfloat16 weight's float32 factors too)."""
    shapes = SHAPES_ND + [(6, 5)]
    hp = {"pre_conditioner_update_probability": prob, "balance_prob": 0.3, "lr": 1e-2}
    grads = make_grads(shapes, dtype=dtype)
    full = make_params(shapes, dtype)
    opt = optim.create("kron", [{"params": full[:3]}, {"params": full[3:]}], **hp)
    run(opt, full, grads)

    half = make_params(shapes, dtype)
    first = optim.create("kron", [{"params": half[:3]}, {"params": half[3:]}], **hp)
    run(first, half, grads, stop=47)
    if prob == 0.1:
        assert first.state[half[0]]["update_counter"] == 47 % 10
    buffer = io.BytesIO()
    torch.save({"params": half, "opt": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params = saved["params"]
    second = optim.create("kron", [{"params": params[:3]}, {"params": params[3:]}], **hp)
    second.load_state_dict(saved["opt"])
    run(second, params, grads, start=47)
    for a, b in zip(params, full):
        assert torch.equal(a, b)
    for a, b in zip(params, full):
        sa, sb = dict(second.state[a]), opt.state[b]
        assert sa.keys() == sb.keys()
        # the generator state comes back as its byte values in the parameter's dtype
        # (load_state_dict casts every state tensor so), and is used as such
        assert torch.equal(sa.pop("rng_state").to(torch.uint8), sb["rng_state"])
        for key, value in sa.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == sb[key].dtype and torch.equal(value, sb[key]), key
            else:
                assert value == sb[key], key


def _factor_history(seed, steps=12, shapes=((5, 4), (3,))):
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    opt = optim.create("kron", params, seed=seed, pre_conditioner_update_probability=1.0, balance_prob=0.5)
    history = []
    for grads in make_grads(list(shapes), steps=steps):
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        history.append([q.clone() for p in params for q in _factors(opt, p)])
    return history, [opt.state[p]["rng_state"].clone() for p in params]


def test_the_same_seed_draws_the_same_preconditioner_updates():
    a, rng_a = _factor_history(seed=3)
    b, rng_b = _factor_history(seed=3)
    c, _ = _factor_history(seed=4)
    for qa, qb in zip(a, b):
        assert all(torch.equal(x, y) for x, y in zip(qa, qb))
    assert all(torch.equal(x, y) for x, y in zip(rng_a, rng_b))
    assert not all(torch.equal(x, y) for x, y in zip(a[-1], c[-1]))


def test_the_probe_is_the_generator_seeded_with_seed():
    """The first update's probe v is torch.randn from Generator().manual_seed(seed)
    (for a vector, with no balancing coin): q₁ follows from it in closed form."""
    p = torch.zeros(4, requires_grad=True)
    opt = optim.create("kron", [p], seed=11, pre_conditioner_update_probability=1.0, momentum=0.0)
    g = torch.tensor([1.0, -2.0, 0.5, 3.0])
    p.grad = g.clone()
    opt.step()
    v = torch.randn(4, generator=torch.Generator().manual_seed(11))
    aa, bb = g * g, v * v
    expected = 1 - 0.1 * (aa - bb) / ((aa + bb).abs().max() + torch.finfo(torch.bfloat16).tiny)
    torch.testing.assert_close(_factors(opt, p)[0], expected, rtol=1e-6, atol=0)
    state = torch.Generator().manual_seed(11)
    torch.randn(4, generator=state)
    assert torch.equal(opt.state[p]["rng_state"], state.get_state())


@pytest.mark.parametrize(
    "key,value",
    [
        ("pre_conditioner_update_probability", 1.5),
        ("pre_conditioner_update_probability", "often"),
        ("max_size_triangular", -1),
        ("min_ndim_triangular", 1.5),
        ("memory_save_mode", "some_diag"),
        ("mu_dtype", torch.int32),
        ("precondition_dtype", "float33"),
        ("precondition_dtype", torch.int64),
        ("precondition_lr", -0.1),
        ("precondition_init_scale", 0.0),
        ("balance_prob", 2.0),
        ("seed", -1),
        ("seed", 1.5),
        ("momentum", 1.0),
        ("weight_decouple", 1),
    ],
)
def test_invalid_values_name_the_parameter(key, value):
    with pytest.raises(ValueError, match=rf"invalid {key}="):
        optim.create("kron", [torch.zeros(2, 2, requires_grad=True)], **{key: value})


def test_vectors_are_not_decayed():
    """As the reference, weight decay applies to tensors of ≥ 2 dimensions only."""
    v, m = torch.ones(3, requires_grad=True), torch.ones(3, 2, requires_grad=True)
    opt = optim.create("kron", [v, m], weight_decay=0.5, lr=0.1)
    v.grad, m.grad = torch.zeros(3), torch.zeros(3, 2)
    opt.step()
    assert torch.equal(v, torch.ones(3))
    assert torch.allclose(m, torch.full((3, 2), 0.95))
