"""``state_dtype="bfloat16"``: elementwise optimizer state in bfloat16 with stochastic rounding."""

from __future__ import annotations

import io

import pytest
import torch

from descentlab import optim
from descentlab.optim import lowprec

from .problems import make_grads, make_params, run
from .refs import REFERENCES

NAMES = optim.available()
SHAPES = [(8, 6), (6,), (5, 8)]


def _kernel_round(dst, src, seed=0):
    from descentlab.optim.fused import build

    if build.available() is not None:
        pytest.skip(f"C++ kernels unavailable: {build.available()}")
    build.ops().stochastic_round_bf16(dst, src, seed)
    return dst


ROUNDERS = {
    "torch": lambda dst, src: lowprec.stochastic_round_(dst, src, torch.Generator().manual_seed(0)),
    "kernel": _kernel_round,
}


@pytest.mark.parametrize("how", list(ROUNDERS))
def test_stochastic_rounding_is_unbiased_and_lands_on_neighbours(how):
    x = torch.full((200_001,), 1.0 + 3 * 2.0**-10)  # 3/8 of the way from 1 to 1 + 2^-7 (bf16's next)
    x[1::2].neg_()  # negative values round their magnitude alike
    out = ROUNDERS[how](torch.empty(x.shape, dtype=torch.bfloat16), x).float().abs()
    values = set(out.float().unique().tolist())
    assert values == {1.0, 1.0 + 2.0**-7}
    up = float((out > 1.0).double().mean())
    assert abs(up - 0.375) < 0.005, up  # 5 standard deviations
    nearest = x.to(torch.bfloat16).float().abs()
    assert torch.all(nearest == 1.0), "round-to-nearest drops the increment: the reason for stochastic rounding"


@pytest.mark.parametrize("how", list(ROUNDERS))
def test_non_finite_values_are_kept(how):
    x = torch.tensor([float("inf"), -float("inf"), float("nan"), 2.5])
    out = ROUNDERS[how](torch.empty(4, dtype=torch.bfloat16), x)
    assert out[0] == float("inf") and out[1] == -float("inf") and torch.isnan(out[2]) and out[3] == 2.5


def test_the_kernels_bits_do_not_depend_on_the_threads_and_change_with_the_seed():
    x = torch.randn(100_003)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _kernel_round(torch.empty(x.shape, dtype=torch.bfloat16), x, 7)
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(max(2, threads))
    try:
        many = _kernel_round(torch.empty(x.shape, dtype=torch.bfloat16), x, 7)
    finally:
        torch.set_num_threads(threads)
    other = _kernel_round(torch.empty(x.shape, dtype=torch.bfloat16), x, 8)
    assert torch.equal(one, many)
    assert not torch.equal(one, other)
    assert ((one.float() - x).abs() <= x.abs() * 2.0**-7).all()  # a neighbour, never further


@pytest.mark.parametrize("name", NAMES)
def test_elementwise_state_is_bfloat16_and_the_optimizer_still_descends(name):
    params = make_params(SHAPES)
    opt = optim.create(name, params, state_dtype="bfloat16")
    run(opt, params, make_grads(SHAPES, steps=3))
    for p in params:
        for key, value in opt.state[p].items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape and value.ndim > 0:
                assert value.dtype == torch.bfloat16, f"{name}: {key} is {value.dtype}"
            elif isinstance(value, torch.Tensor) and value.is_floating_point() and value.ndim > 0:
                assert value.dtype == p.dtype, f"{name}: {key} (not elementwise) is {value.dtype}"
    x = torch.ones(4, 3, requires_grad=True)
    scales = torch.linspace(1.0, 10.0, 12).reshape(4, 3)
    defaults = optim.get(name).defaults
    no_decay = {k: 0.0 for k in defaults if "weight_decay" in k and isinstance(defaults[k], float)}
    opt = optim.create(name, [x], state_dtype="bfloat16", **{**no_decay, **REFERENCES[name].descent})
    first = float(0.5 * (scales * x.detach() ** 2).sum())
    for _ in range(300):
        opt.zero_grad()
        (0.5 * (scales * x * x).sum()).backward()
        opt.step()
    opt.eval()
    assert float(0.5 * (scales * x.detach() ** 2).sum()) < 0.5 * first, name


@pytest.mark.parametrize("name", ["adamw", "lion", "ademamix", "mars", "muon", "nadam"])
def test_state_memory_halves_and_steps_track_float32(name):
    grads = make_grads(SHAPES, steps=30)
    full, low = make_params(SHAPES), make_params(SHAPES)
    opt_full, opt_low = optim.create(name, full), optim.create(name, low, state_dtype="bfloat16")
    run(opt_full, full, grads)
    run(opt_low, low, grads)

    def nbytes(opt):
        return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                   if isinstance(v, torch.Tensor) and v.ndim > 0)

    assert nbytes(opt_low) * 2 == nbytes(opt_full)
    # Mean distances: a sign-based step (lion) moves a coordinate by 2·lr where
    # rounding flips the sign of a moment near 0; on average the paths stay close.
    moved = sum(float((a - b).abs().sum()) for a, b in zip(full, make_params(SHAPES)))
    apart = sum(float((a - b).abs().sum()) for a, b in zip(full, low))
    assert 0 < apart < 0.05 * moved, (apart, moved)


@pytest.mark.parametrize("fused", [None, False])
def test_resume_is_exact(fused):
    """Saved mid-run, loaded with weights_only=True into a fresh optimizer: bit for bit
    the uninterrupted run, and the loaded state is bfloat16 again."""
    grads = make_grads(SHAPES, steps=40)
    whole = make_params(SHAPES)
    run(optim.create("adamw", whole, state_dtype="bfloat16", fused=fused), whole, grads)
    half = make_params(SHAPES)
    opt = optim.create("adamw", half, state_dtype="bfloat16", fused=fused)
    run(opt, half, grads, stop=17)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": half}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = [p.clone() for p in saved["params"]]
    opt = optim.create("adamw", resumed, state_dtype="bfloat16", fused=fused)
    opt.load_state_dict(saved["opt"])
    assert all(v.dtype == torch.bfloat16 for s in opt.state.values() for k, v in s.items() if k != "step")
    run(opt, resumed, grads, start=17)
    assert all(torch.equal(a, b) for a, b in zip(whole, resumed))


def test_the_fused_kernel_serves_bfloat16_state():
    """nadam (no bfloat16 kernel): its float32 kernel on the widened state."""
    params = make_params(SHAPES)
    opt = optim.create("nadam", params, state_dtype="bfloat16")
    calls = []
    inner = opt._fused_step
    opt._fused_step = lambda *a: calls.append(inner(*a)) or calls[-1]
    run(opt, params, make_grads(SHAPES, steps=2))
    from descentlab.optim.fused import build

    assert calls == ([True, True] if build.available() is None else [False, False])


def _direct_spy(opt, direct: bool) -> list[int]:
    """Count the steps of the optimizer's bfloat16 kernel; ``direct=False`` takes it away
    (the widen → float32 kernel → stochastic_round_bf16 path)."""
    import dataclasses

    kernel = opt._fused_step.kernel
    calls: list[int] = []

    def spy(*args):
        calls.append(1)
        return kernel.cpu_bf16(*args)

    opt._fused_step.kernel = dataclasses.replace(kernel, cpu_bf16=spy if direct else None)
    return calls


REGULARIZED = {"l1": 1e-3, "l2": 1e-2, "decoupled_decay": 0.1, "maximize": True}


@pytest.mark.parametrize(
    "name, hparams",
    [("adamw", {}), ("adamw", {"weight_decay": 0.1, "amsgrad": True}), ("adamw", REGULARIZED),
     ("lion", {"weight_decay": 0.1}), ("lion", REGULARIZED),
     ("ademamix", {"weight_decay": 0.1, "weight_decouple": True, "t_alpha_beta3": 20}), ("ademamix", REGULARIZED),
     ("adopt", {"weight_decay": 0.1}), ("adopt", REGULARIZED),
     ("mars", {"weight_decay": 0.1, "ams_bound": True}), ("mars", REGULARIZED)],
    ids=["adamw", "adamw-wd_amsgrad", "adamw-regularized_maximize", "lion-wd", "lion-regularized_maximize",
         "ademamix-wd_schedule", "ademamix-regularized_maximize", "adopt-wd", "adopt-regularized_maximize",
         "mars-wd_ams", "mars-regularized_maximize"],
)
def test_the_bfloat16_kernels_equal_widening_bit_for_bit(name, hparams):
    """adamw, lion, ademamix, adopt and mars read and write their bfloat16 state in one pass
    (csrc/lowprec.h): the same parameters and state, bit for bit, as widening it, the
    float32 kernel and the C++ stochastic rounding, over 40 steps of two param groups, one
    parameter larger than a parallel chunk (the rounding bits are those of each element's index)."""
    from descentlab.optim.fused import build

    if build.available() is not None:
        pytest.skip(f"C++ kernels unavailable: {build.available()}")
    shapes = [*SHAPES, (300, 131)]
    grads = make_grads(shapes, steps=40)
    out = {}
    for direct in (True, False):
        params = make_params(shapes)
        lr = optim.get(name).defaults["lr"]
        opt = optim.create(name, [{"params": params[:2]}, {"params": params[2:], "lr": lr / 3}],
                           state_dtype="bfloat16", **hparams)
        calls = _direct_spy(opt, direct)
        run(opt, params, grads)
        out[direct] = (params, opt, len(calls))
    (fast, fast_opt, n), (slow, slow_opt, _) = out[True], out[False]
    # every group's every step (mars keeps its 1-D tensors in a group of their own: three)
    assert n == len(fast_opt.param_groups) * 40, "the bfloat16 kernel did not take every step"
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)
        for key, value in slow_opt.state[b].items():
            got = fast_opt.state[a][key]
            assert (torch.equal(got, value) and got.dtype == value.dtype) if torch.is_tensor(value) else got == value
    assert not torch.equal(fast[0], make_params(shapes)[0])
    assert any(v.dtype == torch.bfloat16 for v in fast_opt.state[fast[-1]].values() if torch.is_tensor(v))


def test_invalid_state_dtype_names_the_value():
    with pytest.raises(ValueError, match=r"invalid state_dtype='float16': expected None or 'bfloat16'"):
        optim.create("adamw", [torch.zeros(3, requires_grad=True)], state_dtype="float16")
