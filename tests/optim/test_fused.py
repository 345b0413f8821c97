"""The fused one-pass steps equal the readable chain, and the ``fused`` option.

Generated from ``optim.fused.KERNELS`` and the reference table: every
optimizer with a kernel is run for 50 steps with ``fused=True`` and with the
readable for-loop chain (``foreach=False``, the ground truth) on the same
gradients, with default and non-default hyperparameters (the reference
table's variants, which include weight decay and maximize), two param groups,
a StepLR schedule, an lr changed at every step, and the universal l1/l2/
decoupled_decay, and ``cautious=True`` where the kernel takes it. float32
parameters must agree to 1e-6 relative
(max |fused − chain| / max |chain|), the state to 1e-5; lion and adamax,
whose chains have no square root, bit for bit. (torch's float32 sqrt, MKL's,
is not correctly rounded and the kernels' is, so a kernel with a sqrt is an
ulp off now and then.)
"""

from __future__ import annotations

import pytest
import torch

from descentlab import optim
from descentlab.optim import fused
from descentlab.optim import transforms as T
from descentlab.optim.fused import build

from .problems import STEPS, groups, make_grads, make_params, rel_diff
from .refs import REFERENCES

NAMES = fused.names()
#: steps of the fused = chain matrix
MATRIX_STEPS = 50
#: The chain has no sqrt: the kernel repeats its arithmetic exactly.
BITWISE = {"lion", "adamax"}
#: The reference matrix's shapes (none a multiple of the SIMD width), and one
#: larger than a parallel chunk (kGrain = 32768).
SHAPES = [(6, 5), (6,), (3, 6), (3,), (260, 131)]
#: The universal options. L1's sign(p) is discontinuous: where a parameter
#: crosses 0, an ulp of difference flips it and the paths part (chaotically,
#: 3e-5 seen with adadelta), so L1 is compared where the kernels are exact.
REGULARIZED = {"l2": 1e-2, "decoupled_decay": 0.1}

needs_cpp = pytest.mark.skipif(
    build.available() is not None, reason=f"C++ kernels unavailable: {build.available()}"
)


def _cases():
    for name in NAMES:
        yield pytest.param(name, "default", {}, id=f"{name}-default")
        check = fused.KERNELS[name].check
        for i, variant in enumerate(REFERENCES[name].variants):
            declined = check({**optim.get(name).defaults, **variant}, None) if check else None
            marks = [pytest.mark.skip(reason=f"the kernel declines it: {declined}")] if declined else []
            yield pytest.param(name, "default", dict(variant), id=f"{name}-variant{i}", marks=marks)
        yield pytest.param(name, "two_groups", {}, id=f"{name}-two_groups")
        yield pytest.param(name, "steplr", {"weight_decay": 0.01}, id=f"{name}-steplr")
        yield pytest.param(name, "every_step", {}, id=f"{name}-lr_every_step")
        if fused.KERNELS[name].cpu_regularized is not None:
            yield pytest.param(name, "default", dict(REGULARIZED), id=f"{name}-l1_l2_decoupled")
        if fused.KERNELS[name].cautious:  # the count pass, then the masked step
            yield pytest.param(name, "two_groups", {"cautious": True, "weight_decay": 0.01}, id=f"{name}-cautious")
            yield pytest.param(name, "default", {"cautious": True, **REGULARIZED}, id=f"{name}-cautious_regularized")


def _scheduler(opt, case):
    if case == "steplr":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.7)
    if case == "every_step":  # a new lr at every step: nothing is compiled for an lr
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + 0.05 * t))
    return None


def _run(name, case, hparams, mode, dtype=torch.float32, grads=None, steps=STEPS, params=None, opt=None):
    grads = grads if grads is not None else make_grads(SHAPES, steps=steps, dtype=dtype)
    if params is None:
        params = make_params(SHAPES, dtype)
        lr = hparams.get("lr", optim.get(name).defaults["lr"])
        opt = optim.create(name, groups(params, case == "two_groups", lr), **mode, **hparams)
    scheduler = _scheduler(opt, case)
    for step in grads[:steps]:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return opt, params


def _spy(opt) -> list[bool]:
    """Record what the optimizer's fused step answers (True: it did the step)."""
    calls: list[bool] = []
    inner = opt._fused_step

    def spy(*args):
        calls.append(inner(*args))
        return calls[-1]

    opt._fused_step = spy
    return calls


def _assert_equal(chain, chain_p, other, other_p, name, exact, tol=1e-6, state_tol=1e-5):
    """``other``'s params and state equal the chain's (bitwise if ``exact``)."""
    for i, (want, got) in enumerate(zip(chain_p, other_p)):
        assert torch.isfinite(got).all()
        diff = rel_diff(got, want)
        if exact:
            assert torch.equal(got, want), f"{name}: param {i} differs ({diff:.2e})"
        assert diff <= tol, f"{name}: param {i}: {diff:.2e} > {tol}"
        state, expected = other.state[got], chain.state[want]
        assert sorted(state) == sorted(expected), f"{name}: state keys {sorted(state)} != {sorted(expected)}"
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
                d = rel_diff(state[key], value)
                assert d <= state_tol, f"{name}: state {key} of param {i}: {d:.2e} > {state_tol}"
            else:
                assert state[key] == value, f"{name}: state {key}: {state[key]!r} != {value!r}"


# -- the table ------------------------------------------------------------------


def test_kernels_are_named_optimizers():
    assert set(NAMES) <= set(optim.available())
    for name in optim.available():
        opt = optim.create(name, [torch.zeros(2, 2, requires_grad=True)])
        assert (opt._fused_step is not None) == (name in fused.KERNELS), name


# -- fused == chain -----------------------------------------------------------------


@needs_cpp
@pytest.mark.parametrize("name,case,hparams", list(_cases()))
def test_fused_equals_chain(name, case, hparams):
    # 50 steps: five StepLR decays, 50 lrs, the bias corrections' fast change; a wrong
    # kernel is off from its first steps by far more than the tolerance
    chain, chain_p = _run(name, case, hparams, {"foreach": False}, steps=MATRIX_STEPS)
    fast, fast_p = _run(name, case, hparams, {"fused": True}, steps=MATRIX_STEPS)
    _assert_equal(chain, chain_p, fast, fast_p, name, exact=name in BITWISE)
    assert not torch.equal(chain_p[0], make_params(SHAPES)[0]), "nothing moved"


@needs_cpp
@pytest.mark.parametrize("name", NAMES)
def test_fused_equals_chain_float64(name):
    chain, chain_p = _run(name, "default", {}, {"foreach": False}, dtype=torch.float64, steps=30)
    fast, fast_p = _run(name, "default", {}, {"fused": True}, dtype=torch.float64, steps=30)
    _assert_equal(chain, chain_p, fast, fast_p, name, exact=name in BITWISE, tol=1e-12, state_tol=1e-10)


@needs_cpp
@pytest.mark.parametrize("name", ["lion", "adamw", "lamb", "lars", "prodigy", "adafactor"])
def test_fused_equals_chain_on_two_threads(name):
    """Several parallel chunks (and per-chunk norm sums) give the same result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chain, chain_p = _run(name, "default", {}, {"foreach": False}, steps=20)
        fast, fast_p = _run(name, "default", {}, {"fused": True}, steps=20)
    finally:
        torch.set_num_threads(threads)
    _assert_equal(chain, chain_p, fast, fast_p, name, exact=name in BITWISE)


@needs_cpp
@pytest.mark.parametrize(
    "hparams",
    [
        {"lr": 0.02, "weight_decay": 0.01},
        # the AdamW branch with its own decay and the universal one (two decays)
        {"adamw_weight_decay": 0.05, "decoupled_decay": 0.1, "l2": 1e-2},
        {"nesterov": False, "weight_decay": 0.0, "adjust_lr_fn": "match_rms_adamw"},
    ],
    ids=["wd", "adamw_two_decays", "plain_momentum"],
)
def test_muon_matrices_equal_the_chain_bitwise(hparams):
    """The momentum and update passes repeat the chain's arithmetic and Newton–Schulz
    is the chain's own code: the matrices (wide, tall, larger than a parallel
    chunk) come out bit for bit; the AdamW group (Adam's sqrt) within 1e-6."""
    chain, chain_p = _run("muon", "default", hparams, {"foreach": False})
    fast, fast_p = _run("muon", "default", hparams, {"fused": True})
    assert [g["use_muon"] for g in fast.param_groups] == [True, False]
    _assert_equal(chain, chain_p, fast, fast_p, "muon", exact=False)
    for shape, want, got in zip(SHAPES, chain_p, fast_p):
        if len(shape) == 2:
            assert torch.equal(got, want), f"muon: matrix of shape {shape} differs ({rel_diff(got, want):.2e})"
            assert torch.equal(fast.state[got]["momentum_buffer"], chain.state[want]["momentum_buffer"])


@needs_cpp
@pytest.mark.parametrize("threads", [1, 2])
def test_adafactor_factors_stacks_of_matrices(threads):
    """ndim > 2: row and column statistics per matrix of the stack (the last two
    dims), and a 1×1 parameter, on one and two threads."""
    shapes = [(4, 6, 5), (2, 3, 7, 9), (1, 1), (3, 300, 130)]
    grads = make_grads(shapes, steps=30)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for mode in ({"foreach": False}, {"fused": True}):
            params = make_params(shapes)
            opt = optim.create("adafactor", params, lr=0.05, weight_decay=0.01, **mode)
            calls = _spy(opt)
            _run("adafactor", "default", {}, mode, grads=grads, steps=30, params=params, opt=opt)
            assert all(calls) if mode.get("fused") else not any(calls)
            results.append((opt, params))
    finally:
        torch.set_num_threads(threads_before)
    (chain, chain_p), (fast, fast_p) = results
    _assert_equal(chain, chain_p, fast, fast_p, "adafactor", exact=False)
    assert fast.state[fast_p[0]]["row_var"].shape == (4, 6, 1)


@needs_cpp
@pytest.mark.parametrize("case", ["tiny_gradients", "zero_rows_and_columns"])
def test_adafactor_edge_statistics(case):
    """Where R_i·C_j/mean(R) < eps1² the kernel's one-pass norm of U does not hold
    and it makes a second pass (tiny gradients); rows and columns whose gradient
    has always been zero (unused embedding rows) have zero statistics, which
    the one-pass norm skips: both equal the chain."""
    shapes = [(40, 30), (3, 20, 10), (7,)]
    grads = make_grads(shapes, steps=25)
    for step in grads:
        if case == "tiny_gradients":
            for g in step:
                g.mul_(1e-9)
        else:
            step[0][5:12] = 0.0
            step[0][:, 3] = 0.0
            step[1][1, 4] = 0.0
    results = []
    for mode in ({"foreach": False}, {"fused": True}):
        params = make_params(shapes)
        opt = optim.create("adafactor", params, lr=0.05, **mode)
        _run("adafactor", "default", {}, mode, grads=grads, steps=25, params=params, opt=opt)
        results.append((opt, params))
    (chain, chain_p), (fast, fast_p) = results
    _assert_equal(chain, chain_p, fast, fast_p, "adafactor", exact=False)
    assert not torch.equal(fast_p[0], make_params(shapes)[0])
    if case == "zero_rows_and_columns":
        assert (fast.state[fast_p[0]]["row_var"][5:12] == 0).all()


@needs_cpp
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("direction", ["fused_to_chain", "chain_to_fused"])
def test_state_dict_moves_between_paths(name, direction):
    """Same state keys and formats: a state_dict saved on one path resumes on the other."""
    grads = make_grads(SHAPES)
    first, second = ({"fused": True}, {"fused": False, "foreach": False})
    if direction == "chain_to_fused":
        first, second = second, first
    opt, params = _run(name, "default", {}, first, grads=grads, steps=STEPS // 2)
    saved = opt.state_dict()
    resumed_p = [p.detach().clone() for p in params]
    resumed = optim.create(name, resumed_p, **second)
    resumed.load_state_dict(saved)
    for group in resumed.param_groups:  # the saved groups carry the first path's choice, as in torch
        group["fused"], group["foreach"] = second.get("fused"), second.get("foreach")
    calls = _spy(resumed)
    _run(name, "default", {}, second, grads=grads[STEPS // 2:], params=resumed_p, opt=resumed)
    assert all(calls) if second.get("fused") else not any(calls)
    whole, whole_p = _run(name, "default", {}, {"foreach": False}, grads=grads)
    _assert_equal(whole, whole_p, resumed, resumed_p, name, exact=name in BITWISE)


# -- auto dispatch -------------------------------------------------------------------


@needs_cpp
@pytest.mark.parametrize("name", NAMES)
def test_auto_picks_fused_for_contiguous_cpu_float32(name):
    params = make_params(SHAPES)
    opt = optim.create(name, params)
    assert opt.param_groups[0]["fused"] is None
    calls = _spy(opt)
    _run(name, "default", {}, {}, steps=2, params=params, opt=opt)
    assert calls == [True] * 2 * len(opt.param_groups)  # muon: its matrices and its AdamW group


@pytest.mark.parametrize("foreach", [False, True])
def test_explicit_foreach_keeps_the_chain(foreach):
    """foreach=False is the readable ground truth the reference matrix compares: never fused."""
    params = make_params(SHAPES)
    opt = optim.create("adam", params, foreach=foreach)
    calls = _spy(opt)
    _run("adam", "default", {}, {}, steps=2, params=params, opt=opt)
    assert calls == [False, False]


def test_fused_false_never_calls_the_kernel():
    params = make_params(SHAPES)
    opt = optim.create("lion", params, fused=False)
    calls = _spy(opt)
    _run("lion", "default", {}, {}, steps=2, params=params, opt=opt)
    assert calls == []


@needs_cpp
@pytest.mark.parametrize("name", sorted(BITWISE))
def test_fused_l1_equals_chain_bitwise(name):
    hparams = {"l1": 1e-3, **REGULARIZED}
    chain, chain_p = _run(name, "default", hparams, {"foreach": False})
    fast, fast_p = _run(name, "default", hparams, {"fused": True})
    _assert_equal(chain, chain_p, fast, fast_p, name, exact=True)


def test_auto_declines_what_it_cannot_do():
    """Non-contiguous params, float16, and options the kernel lacks: the chain, silently."""
    base = torch.randn(5, 4)
    for params, hparams in [
        ([base.t().requires_grad_()], {}),  # non-contiguous
        ([torch.randn(3, dtype=torch.float16, requires_grad=True)], {}),
        ([torch.randn(3, requires_grad=True)], {"l1": 0.01}),  # sgd's torch kernel has no l1
    ]:
        opt = optim.create("sgd", params, lr=0.1, **hparams)
        calls = _spy(opt)
        params[0].grad = torch.ones_like(params[0])
        opt.step()
        assert calls == [False]


@needs_cpp
def test_auto_result_equals_chain_when_it_declines():
    params = [torch.randn(6, 5).t()]  # non-contiguous: the chain runs
    ref = [params[0].clone()]
    a, b = optim.create("lion", params, lr=0.1), optim.create("lion", ref, lr=0.1, foreach=False)
    for p in (params[0], ref[0]):
        p.grad = torch.ones_like(p)
    a.step()
    b.step()
    assert torch.equal(params[0], ref[0])


def test_universal_l2_takes_the_torch_kernel_when_weight_decay_is_zero():
    """sgd/adam/adagrad: l2 alone is the same arithmetic as their coupled weight_decay."""
    grads = make_grads(SHAPES, steps=20)
    for name in ("sgd", "momentum", "adam", "adagrad"):
        a, b = make_params(SHAPES), make_params(SHAPES)
        opt_a, opt_b = optim.create(name, a, l2=0.1), optim.create(name, b, weight_decay=0.1)
        calls = _spy(opt_a)
        _run(name, "default", {}, {}, grads=grads, steps=20, params=a, opt=opt_a)
        _run(name, "default", {}, {}, grads=grads, steps=20, params=b, opt=opt_b)
        assert all(calls)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), name


# -- fused=True where it is impossible ---------------------------------------------------


def test_every_named_optimizer_has_a_kernel():
    """Every optimizer has a kernel, or is listed in fused.UNFUSED with the reason."""
    assert not set(NAMES) & set(fused.UNFUSED)
    assert sorted(NAMES + list(fused.UNFUSED)) == sorted(optim.available())


@pytest.mark.parametrize("name", sorted(fused.UNFUSED))
def test_fused_true_on_an_unfused_optimizer_is_an_error(name):
    with pytest.raises(ValueError, match="fused=True"):
        optim.create(name, [torch.zeros(4, 4, requires_grad=True)], fused=True)


def test_fused_true_without_a_kernel_is_an_error():
    """A chain of the user's own transforms has no kernel."""
    with pytest.raises(ValueError, match="fused=True: chain has no fused kernel"):
        optim.chain([torch.zeros(4, 4, requires_grad=True)], T.scale_by_adam(), fused=True)


@pytest.mark.parametrize(
    "params,match",
    [
        ([torch.zeros(5, 4).t()], "non-contiguous"),
        ([torch.zeros(3, dtype=torch.float16)], "float16"),
        ([torch.zeros(3, dtype=torch.bfloat16)], "bfloat16"),
        ([torch.zeros(3, device="meta")], "on meta"),
    ],
    ids=["non-contiguous", "float16", "bfloat16", "meta-device"],
)
@pytest.mark.parametrize("name", ["adam", "lion"])
def test_fused_true_with_unsupported_tensors_is_an_error(name, params, match):
    with pytest.raises(ValueError, match=rf"fused=True: {name} needs contiguous float32/float64 .*{match}"):
        optim.create(name, params, fused=True)


def test_fused_true_with_foreach_true_is_an_error():
    with pytest.raises(ValueError, match="foreach=True"):
        optim.create("adam", [torch.zeros(3)], fused=True, foreach=True)


def test_fused_true_with_an_option_no_kernel_takes_is_an_error():
    with pytest.raises(ValueError, match="fused=True: sgd .*l1"):
        optim.create("sgd", [torch.zeros(3)], fused=True, l1=0.01)


def test_fused_true_in_a_later_param_group_is_checked():
    opt = optim.create("adam", [torch.zeros(3)])
    with pytest.raises(ValueError, match="float16"):
        opt.add_param_group({"params": [torch.zeros(3, dtype=torch.float16)], "fused": True})


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_fused_must_be_none_or_bool(value):
    with pytest.raises(ValueError, match=rf"invalid fused={value!r}: expected None, True or False"):
        optim.create("adam", [torch.zeros(3)], fused=value)


def test_fused_true_raises_at_a_step_that_became_impossible():
    p = torch.zeros(3, requires_grad=True)
    opt = optim.create("sgd", [p], fused=True)
    opt.param_groups[0]["l1"] = 0.1
    p.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="fused=True: sgd .*l1"):
        opt.step()


@needs_cpp
def test_kernels_check_the_state_they_are_given():
    """A state tensor no kernel can index as a flat array (here a hand-made,
    non-contiguous one) is an error, not a wrong step or a write out of bounds."""
    p = torch.zeros(4, 5, requires_grad=True)
    opt = optim.create("lion", [p])
    p.grad = torch.ones(4, 5)
    opt.step()
    opt.state[p]["exp_avg"] = torch.zeros(5, 4).t()
    with pytest.raises(RuntimeError, match="exp_avgs.0. is not a contiguous CPU tensor"):
        opt.step()


def test_unbuildable_cpp_kernels(monkeypatch):
    """No compiler: auto falls back with one warning; fused=True names the reason."""
    reason = "the C++ fused kernels could not be built (RuntimeError: no compiler)"
    monkeypatch.setattr(fused, "cpp_available", lambda: reason)
    with pytest.raises(ValueError, match="no compiler"):
        optim.create("lion", [torch.zeros(3)], fused=True)
    params = [torch.zeros(3, requires_grad=True)]
    opt = optim.create("lion", params, lr=0.1)
    calls = _spy(opt)
    params[0].grad = torch.ones(3)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        opt.step()
    opt.step()
    assert calls == [False, False]
    assert float(params[0].detach()[0]) == pytest.approx(-0.2)
    # torch's own kernels need no build
    assert optim.create("adam", [torch.zeros(3)], fused=True) is not None


def test_build_is_cached():
    """Once built (tests above, or the cache), loading takes no compile."""
    problem = build.available()
    if problem is not None:
        pytest.skip(reason=f"C++ kernels unavailable: {problem}")
    assert build.build_seconds() is not None
    assert build.ops() is build.ops()


# -- CUDA ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU-only: torch's fused kernels on CUDA")
@pytest.mark.parametrize("name", [n for n in NAMES if fused.KERNELS[n].cuda is not None])
def test_torch_fused_kernels_on_cuda_equal_the_chain(name):
    grads = [[g.cuda() for g in step] for step in make_grads(SHAPES, steps=50)]
    results = []
    for mode in ({"foreach": False}, {"fused": True}):
        params = [p.cuda() for p in make_params(SHAPES)]
        opt = optim.create(name, params, **mode)
        calls = _spy(opt)
        _run(name, "default", {}, {}, grads=grads, steps=50, params=params, opt=opt)
        assert all(calls) if mode.get("fused") else not any(calls)
        results.append([p.cpu() for p in params])
    for a, b in zip(*results):
        assert rel_diff(b, a) <= 1e-5
