"""A 0-dim tensor ``lr``, as torch.optim takes it, for every named optimizer.

Generated from the registry (``optim.available()``) and each path (``fused``
None, False and True where the optimizer has a kernel): the same gradients are
applied with ``lr`` a tensor and with ``lr`` a float, under a schedule that
changes the rate at every step, and the parameters and state must be equal
bit for bit. Schedulers update a tensor lr in place (``fill_``), so the
optimizer must read its value at every step.

Exactness: a float64 tensor holds the schedule's Python floats exactly
(descentlab's warmup_cosine); a float32 tensor (torch's default dtype) holds
powers of two exactly (torch's StepLR with gamma 0.5 from a power-of-two lr).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from descentlab import optim, schedules
from descentlab.optim import fused
from descentlab.optim.fused import build

from .problems import make_grads, make_params

NAMES = optim.available()
STEPS = 12
#: A 2-D weight first (Muon's part), then 1-D ones (Muon's AdamW part).
SHAPES = [(5, 4), (4,), (3, 5), (3,)]
FUSED_UNAVAILABLE = build.available()


def test_registry_has_every_optimizer():
    assert len(NAMES) == 26, NAMES


def _power_of_two_lr(name: str) -> float:
    """The power of two nearest the default lr (exact in float32, and halvings too)."""
    return 2.0 ** round(math.log2(optim.get(name).defaults["lr"]))


def _cases():
    for name in NAMES:
        for mode in (None, False, True):
            marks = ()
            if mode is True and name not in fused.KERNELS:
                marks = pytest.mark.skip(reason=f"{name} has no fused kernel")
            elif mode is True and FUSED_UNAVAILABLE is not None:
                marks = pytest.mark.skip(reason=f"C++ kernels unavailable: {FUSED_UNAVAILABLE}")
            yield pytest.param(name, mode, marks=marks, id=f"{name}-fused={mode}")


def _groups(params, lr, make_lr):
    """Two param groups, the second with its own lr (a separate tensor)."""
    return [{"params": params[:2]}, {"params": params[2:], "lr": make_lr(lr / 2)}]


def _run(name, mode, make_lr, lr, dtype, scheduler_fn, extra=None):
    params = [p.requires_grad_() for p in make_params(SHAPES, dtype)]
    grads = make_grads(SHAPES, steps=STEPS, dtype=dtype)
    hparams = {"lr": make_lr(lr), **(extra or {})}
    if name == "muon":  # its AdamW part's lr, also a tensor where lr is one
        hparams["adamw_lr"] = make_lr(lr / 4)
    opt = optim.create(name, _groups(params, lr, make_lr), fused=mode, **hparams)
    scheduler = scheduler_fn(opt)
    lrs = [g["lr"] for g in opt.param_groups]
    seen = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
        scheduler.step()
        seen.append([float(g["lr"]) for g in opt.param_groups])
    for before, group in zip(lrs, opt.param_groups):
        if isinstance(before, torch.Tensor):
            assert group["lr"] is before, "the scheduler must update a tensor lr in place"
    return opt, params, seen


def _assert_same(opt_t, params_t, opt_f, params_f):
    for i, (got, want) in enumerate(zip(params_t, params_f)):
        assert torch.isfinite(got).all()
        assert torch.equal(got, want), f"param {i} differs: {(got - want).abs().max():.3e}"
        state, expected = opt_t.state[got], opt_f.state[want]
        assert sorted(state) == sorted(expected)
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(state[key], value), f"state {key} of param {i} differs"
            else:
                assert state[key] == value, f"state {key} of param {i}: {state[key]!r} != {value!r}"
    assert not torch.equal(params_f[0], make_params(SHAPES, params_f[0].dtype)[0]), "nothing moved"


def _float64_tensor(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _warmup_cosine(opt):
    return schedules.create("warmup_cosine", opt, warmup_steps=4, total_steps=STEPS, min_lr=0.0)


@pytest.mark.parametrize("name,mode", list(_cases()))
def test_tensor_lr_equals_float_lr_with_descentlab_schedule(name, mode):
    lr = optim.get(name).defaults["lr"]
    opt_t, params_t, lrs_t = _run(name, mode, _float64_tensor, lr, torch.float64, _warmup_cosine)
    opt_f, params_f, lrs_f = _run(name, mode, float, lr, torch.float64, _warmup_cosine)
    assert lrs_t == lrs_f
    assert len(set(map(tuple, lrs_f))) > 3, "the schedule should change the lr"
    _assert_same(opt_t, params_t, opt_f, params_f)


def _halving(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)


@pytest.mark.parametrize("name,mode", list(_cases()))
def test_float32_tensor_lr_equals_float_lr_with_torch_scheduler(name, mode):
    lr = _power_of_two_lr(name)
    opt_t, params_t, lrs_t = _run(name, mode, torch.tensor, lr, torch.float32, _halving)
    opt_f, params_f, lrs_f = _run(name, mode, float, lr, torch.float32, _halving)
    assert lrs_t == lrs_f
    _assert_same(opt_t, params_t, opt_f, params_f)


@pytest.mark.parametrize("name", NAMES)
def test_tensor_lr_survives_a_weights_only_state_dict(name, tmp_path):
    """Saved, loaded with ``torch.load(weights_only=True)`` into a fresh optimizer,
    continued: equal to the uninterrupted run (the lr stays a tensor)."""

    def make():
        params = [p.requires_grad_() for p in make_params(SHAPES, torch.float64)]
        opt = optim.create(name, params, lr=_float64_tensor(optim.get(name).defaults["lr"]))
        return params, opt, _warmup_cosine(opt)

    grads = make_grads(SHAPES, steps=STEPS, dtype=torch.float64)

    def run(params, opt, scheduler, steps):
        for step in steps:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
            scheduler.step()

    whole = make()
    run(*whole, grads)
    first = make()
    run(*first, grads[: STEPS // 2])
    path = tmp_path / "state.pt"
    torch.save({"opt": first[1].state_dict(), "sched": first[2].state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    resumed = make()
    with torch.no_grad():
        for p, q in zip(resumed[0], first[0]):
            p.copy_(q)
    resumed[1].load_state_dict(saved["opt"])
    resumed[2].load_state_dict(saved["sched"])
    assert isinstance(resumed[1].param_groups[0]["lr"], torch.Tensor)
    run(*resumed, grads[STEPS // 2 :])
    for got, want in zip(resumed[0], whole[0]):
        assert torch.equal(got, want)


# -- invalid tensor lrs ---------------------------------------------------------------

INVALID = [
    # (lr, the message's expectation)
    (torch.tensor(-1e-3), "expected a finite number >= 0"),
    (torch.tensor(float("nan")), "expected a finite number >= 0"),
    (torch.tensor(float("inf")), "expected a finite number >= 0"),
    (torch.tensor([1e-3]), "a 0-dim tensor, got a tensor of shape (1,)"),
    (torch.tensor([1e-3, 1e-3]), "a 0-dim tensor, got a tensor of shape (2,)"),
    (torch.tensor(1), "expected a floating-point tensor, got dtype torch.int64"),
    (torch.tensor(True), "expected a floating-point tensor, got dtype torch.bool"),
    (torch.tensor(1e-3, requires_grad=True), "a tensor that does not require grad"),
]


def _small_params():
    return [torch.zeros(3, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lr,message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_tensor_lr_raises_naming_the_value(name, lr, message):
    with pytest.raises(ValueError, match=re.escape(f"invalid lr={lr!r}: ") + ".*" + re.escape(message)):
        optim.create(name, _small_params(), lr=lr)


@pytest.mark.parametrize("lr,message", INVALID[:1] + INVALID[3:4], ids=["negative", "shape"])
def test_invalid_tensor_lr_in_a_param_group(lr, message):
    groups = [{"params": [torch.zeros(2, requires_grad=True)]}, {"params": [torch.zeros(3, requires_grad=True)], "lr": lr}]
    with pytest.raises(ValueError, match=re.escape(message)):
        optim.create("adagrad", groups)


def test_invalid_tensor_adamw_lr_of_muon():
    with pytest.raises(ValueError, match=re.escape("invalid adamw_lr=tensor(-1.)")):
        optim.create("muon", _small_params(), adamw_lr=torch.tensor(-1.0))


def test_chain_takes_a_tensor_lr():
    p = torch.ones(3, requires_grad=True)
    lr = torch.tensor(0.5)
    opt = optim.chain([p], optim.transforms.scale_by_adam(), lr=lr)
    p.grad = torch.ones(3)
    opt.step()
    lr.fill_(0.25)  # the user's own tensor, changed in place, takes effect
    p.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 1 - 0.5 - 0.25), rtol=0, atol=1e-6)
