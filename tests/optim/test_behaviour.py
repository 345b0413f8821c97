"""Behaviour every named optimizer must have, generated from the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from descentlab import optim
from descentlab.optim.chain import walk
from descentlab.optim.base import Transform

from .problems import make_grads, make_params, run, shapes_for
from .refs import REFERENCES

NAMES = optim.available()
WORKER = Path(__file__).with_name("resume_worker.py")


def _no_decay(name: str) -> dict:
    """Hyperparameters that switch off any weight decay (which moves params on its own)."""
    defaults = optim.get(name).defaults
    return {k: 0.0 for k in defaults if "weight_decay" in k and isinstance(defaults[k], float)}


def quadratic(x: torch.Tensor) -> torch.Tensor:
    scales = torch.linspace(1.0, 10.0, x.numel(), dtype=x.dtype).reshape(x.shape)
    return 0.5 * (scales * x * x).sum()


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    a, b = x.flatten()[0], x.flatten()[1]
    return (1 - a) ** 2 + 100 * (b - a * a) ** 2


def _minimize(name: str, fn, start: torch.Tensor, steps: int) -> tuple[float, float]:
    x = start.clone().requires_grad_(True)
    hp = {**_no_decay(name), **REFERENCES[name].descent}
    opt = optim.create(name, [x], **hp)
    first = float(fn(x.detach()))
    for _ in range(steps):
        opt.zero_grad()
        loss = fn(x)
        loss.backward()
        opt.step()
    opt.eval()  # schedule-free optimizers evaluate at their averaged point
    return first, float(fn(x.detach()))


@pytest.mark.parametrize("name", NAMES)
def test_lowers_a_quadratic(name):
    first, last = _minimize(name, quadratic, torch.ones(4, 3), steps=300)
    assert last < 0.5 * first, f"{name}: {first:.4g} -> {last:.4g}"


@pytest.mark.parametrize("name", NAMES)
def test_lowers_rosenbrock(name):
    first, last = _minimize(name, rosenbrock, torch.tensor([[-1.5, 2.0]]), steps=500)
    assert last < first, f"{name}: {first:.4g} -> {last:.4g}"


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", NAMES)
def test_zero_gradients_leave_params_unchanged(name, foreach):
    shapes = shapes_for(REFERENCES[name])
    params = make_params(shapes)
    before = [p.clone() for p in params]
    opt = optim.create(name, params, foreach=foreach, **_no_decay(name))
    run(opt, params, [[torch.zeros(s) for s in shapes]] * 5)
    opt.eval()
    for p, b in zip(params, before):
        torch.testing.assert_close(p, b, rtol=0, atol=0)


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_untouched(name, foreach):
    shapes = shapes_for(REFERENCES[name])
    params = make_params(shapes)
    frozen = params[1]
    before = frozen.clone()
    opt = optim.create(name, params, foreach=foreach, weight_decay=optim.get(name).defaults.get("weight_decay", 0.0))
    for grads in make_grads(shapes, steps=5):
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = None if i == 1 else g
        opt.step()
    assert torch.equal(frozen, before)
    assert not opt.state[frozen], "no state should be created for a param that never had a grad"
    assert not torch.equal(params[0], make_params(shapes)[0]), "params with grads should move"


@pytest.mark.parametrize("name", NAMES)
def test_every_transform_has_a_multi_tensor_path(name):
    chain = optim.create(name, [torch.zeros(2, 2, requires_grad=True)]).transforms
    for t in walk(chain):
        own_update = type(t).update is not Transform.update
        own_foreach = type(t).update_foreach is not Transform.update_foreach
        assert own_update or own_foreach, f"{type(t).__name__} has no multi-tensor path"


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_documented(name):
    spec = optim.get(name)
    assert spec.summary and "\n" not in spec.summary
    assert spec.reference and spec.paper
    chain = spec.build()
    for t in chain:
        assert type(t).__doc__, f"{type(t).__name__} has no docstring"


@pytest.mark.parametrize("name", NAMES)
def test_grad_scaler_skips_a_step_with_inf_gradient(name):
    shapes = shapes_for(REFERENCES[name])
    params = [p.requires_grad_(True) for p in make_params(shapes)]
    opt = optim.create(name, params, **_no_decay(name))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)

    def scaled_step(poison: bool) -> None:
        opt.zero_grad()
        loss = sum((p * p).sum() for p in params)
        scaler.scale(loss).backward()
        if poison:
            params[0].grad.view(-1)[0] = float("inf")
        scaler.step(opt)
        scaler.update()

    before = [p.detach().clone() for p in params]
    scaled_step(poison=True)
    assert scaler.get_scale() == 2.0**7, "the scale should back off after an inf"
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b), "a step with an inf gradient must be skipped"
    assert all(not s for s in opt.state.values()), "a skipped step must not touch state"
    scaled_step(poison=False)
    assert all(opt.state[p] for p in params), "the step after a skipped one must run"
    if all(torch.equal(p.detach(), b) for p, b in zip(params, before)):
        # ADOPT's (and SOAP's) first step only records statistics; the second moves.
        scaled_step(poison=False)
    assert any(not torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert all(torch.isfinite(p).all() for p in params)


def test_state_dict_resumes_in_a_new_process(tmp_path):
    """Save at step 50, load in a fresh process with weights_only=True, run 50
    more: bitwise equal to 100 uninterrupted steps, for every optimizer."""
    saved = {}
    expected = {}
    for name in NAMES:
        shapes = shapes_for(REFERENCES[name])
        grads = make_grads(shapes)
        hp = {**REFERENCES[name].variants[0]} if REFERENCES[name].variants else {}
        hp.pop("maximize", None)

        full = make_params(shapes)
        opt = optim.create(name, [{"params": full[:2]}, {"params": full[2:]}], **hp)
        run(opt, full, grads)
        opt.eval()
        expected[name] = full

        half = make_params(shapes)
        opt = optim.create(name, [{"params": half[:2]}, {"params": half[2:]}], **hp)
        run(opt, half, grads, stop=50)
        saved[name] = {"hparams": hp, "params": half, "optimizer": opt.state_dict()}
    path = tmp_path / "half.pt"
    torch.save(saved, path)
    out = tmp_path / "resumed.pt"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(path), str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    resumed = torch.load(out, weights_only=True)
    for name in NAMES:
        for a, b in zip(resumed[name], expected[name]):
            assert torch.equal(a, b), f"{name}: resumed run differs from the uninterrupted one"
