"""DiLoCo against references: torch.optim.SGD as the outer step, DDP for local SGD
with H = 1, and its own uninterrupted run for resume, in one process and in two."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from descentlab.distributed.diloco import DiLoCo
from descentlab.optim import create

from .group import finish, join

WORLD = 2
LR = 0.1


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _batches(rank: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each rank's own data: different inputs and a different target function."""
    g = torch.Generator().manual_seed(1000 + rank)
    xs = torch.randn(steps, 16, 4, generator=g)
    return [(x, (x.sum(1, keepdim=True) * (rank + 1)).sin()) for x in xs]


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches, scheduler=None) -> None:
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# -- one process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sync_every": 0}, "sync_every=0"),
        ({"sync_every": 2.0}, "sync_every=2.0"),
        ({"sync_every": True}, "sync_every=True"),
        ({"outer_lr": 0.0}, "outer_lr=0.0"),
        ({"outer_lr": -1}, "outer_lr=-1"),
        ({"outer_lr": math.nan}, "outer_lr=nan"),
        ({"outer_momentum": 1.0}, r"outer_momentum=1.0: expected a number in \[0, 1\)"),
        ({"outer_momentum": -0.1}, "outer_momentum=-0.1"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    inner = torch.optim.SGD(_model(0).parameters(), lr=LR)
    with pytest.raises(ValueError, match=message):
        DiLoCo(inner, **kwargs)


def test_it_wraps_an_optimizer_and_says_it_averages_parameters():
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        DiLoCo(_model(0).parameters())
    opt = DiLoCo(create("adamw", _model(0).parameters()))
    assert opt.averages_parameters is True and DiLoCo.averages_parameters is True
    assert opt.name == "adamw"  # the inner optimizer's attributes show through
    with pytest.raises(RuntimeError, match="inner optimizer"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})


def test_one_process_is_the_inner_optimizer_plus_the_outer_step_every_h():
    """Δ = θ − θ₁; b ← μb + Δ; θ ← θ − η(Δ + μb), written out by hand."""
    steps, h, eta, mu = 9, 4, 0.7, 0.9
    model, reference = _model(0), _model(0)
    opt = DiLoCo(torch.optim.SGD(model.parameters(), lr=LR), sync_every=h, outer_lr=eta, outer_momentum=mu)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    theta = _params(reference)
    buf = [torch.zeros_like(t) for t in theta]
    for i, batch in enumerate(_batches(0, steps), start=1):
        _train(model, opt, [batch])
        _train(reference, ref_opt, [batch])
        if i % h == 0:
            with torch.no_grad():
                for p, t, b in zip(reference.parameters(), theta, buf):
                    delta = t - p
                    b.mul_(mu).add_(delta)
                    t.sub_(eta * (delta + mu * b))
                    p.copy_(t)
        for got, want in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(got, want)
        if i < h:  # before the first outer step it is the inner optimizer alone
            assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert opt.steps == steps and opt.steps_since_sync == steps % h


def test_sync_ends_the_period_only_if_it_has_steps():
    model = _model(0)
    opt = DiLoCo(torch.optim.SGD(model.parameters(), lr=LR), sync_every=5, outer_lr=0.5, outer_momentum=0.0)
    assert opt.sync() is False
    start = _params(model)
    _train(model, opt, _batches(0, 2))
    local = _params(model)
    assert opt.sync() is True and opt.steps_since_sync == 0
    for p, s, loc in zip(model.parameters(), start, local):  # θ ← θ − 0.5·(θ − θ₁): halfway
        torch.testing.assert_close(p, (s + loc) / 2)
    assert opt.sync() is False


def test_an_lr_scheduler_given_diloco_schedules_the_inner_lr():
    model = _model(0)
    inner = create("sgd", model.parameters(), lr=LR)
    opt = DiLoCo(inner, sync_every=2)
    assert opt.param_groups is inner.param_groups
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / (k + 1))
    _train(model, opt, _batches(0, 3), scheduler)
    assert inner.param_groups[0]["lr"] == pytest.approx(LR / 4)


def _resume(tmp_path: Path, tag: str, steps: int, stop: int, make_inner, h: int, rank: int = 0) -> None:
    """Train ``steps`` steps straight, and ``stop`` then save, load into fresh objects, finish: equal.
    With an lr schedule given the DiLoCo object: the inner optimizer's load_state_dict
    replaces its param groups, and the schedule must still reach them."""
    batches = _batches(rank, steps)

    def make(seed: int):
        model = _model(seed)
        opt = DiLoCo(make_inner(model), sync_every=h)
        return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.9**k)

    straight, opt, scheduler = make(0)
    _train(straight, opt, batches, scheduler)

    first, opt, scheduler = make(0)
    _train(first, opt, batches[:stop], scheduler)
    path = tmp_path / f"{tag}{rank}.pt"
    torch.save({"model": first.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, path)
    state = torch.load(path, weights_only=True)
    assert state["optimizer"]["steps_since_sync"] == stop % h
    second, opt, scheduler = make(5)  # other weights: all of them must come from the checkpoint
    second.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _train(second, opt, batches[stop:], scheduler)
    for got, want in zip(second.parameters(), straight.parameters()):
        assert torch.equal(got, want), (got - want).abs().max()


def _adamw(model: nn.Module) -> torch.optim.Optimizer:
    return create("adamw", model.parameters(), lr=1e-2, weight_decay=0.1)


def test_resume_mid_period_in_one_process_is_exact(tmp_path):
    _resume(tmp_path, "one", steps=10, stop=7, make_inner=_adamw, h=5)


# -- two processes -------------------------------------------------------------------


def _worker(rank: int, store: str, out: str) -> None:
    join(rank, store)
    try:
        results = {}
        # 1. Different inits (rank 0's is broadcast) and data; SGD inner; 2 periods of 3, then 1 step and sync().
        model = _model(rank)
        opt = DiLoCo(torch.optim.SGD(model.parameters(), lr=LR), sync_every=3, outer_lr=0.7, outer_momentum=0.9)
        results["start"] = _params(model)
        _train(model, opt, _batches(rank, 7))
        assert opt.sync() is True
        results["end"] = _params(model)
        # 2. H = 1, η = 1, μ = 0 and plain SGD: local SGD with averaging every step, i.e. DDP.
        local, ddp = _model(0), DistributedDataParallel(_model(0))
        _train(local, DiLoCo(torch.optim.SGD(local.parameters(), lr=LR), sync_every=1, outer_lr=1.0,
                             outer_momentum=0.0), _batches(rank, 6))
        _train(ddp, torch.optim.SGD(ddp.parameters(), lr=LR), _batches(rank, 6))
        results["local_sgd"], results["ddp"] = _params(local), _params(ddp.module)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
        # 3. Resume after 7 of 2 periods of H = 5, each rank from its own checkpoint; adamw inner.
        _resume(Path(out), "resume", steps=10, stop=7, make_inner=_adamw, h=5, rank=rank)
        finish()  # group.py: no interpreter teardown once the results are saved
    finally:
        dist.destroy_process_group()


def _simulate(steps_per_period: list[int], h_lr: float, eta: float, mu: float) -> list[torch.Tensor]:
    """Both ranks in this process: each runs its inner SGD from θ on its data; the outer
    step is torch.optim.SGD(nesterov) on θ with gradient Δ = θ − mean of the ranks' θ."""
    theta_model = _model(0)
    outer = torch.optim.SGD(theta_model.parameters(), lr=eta, momentum=mu, nesterov=True)
    batches = [_batches(r, sum(steps_per_period)) for r in range(WORLD)]
    done = 0
    for n in steps_per_period:
        finals = []
        for r in range(WORLD):
            local = copy.deepcopy(theta_model)
            _train(local, torch.optim.SGD(local.parameters(), lr=h_lr), batches[r][done : done + n])
            finals.append(_params(local))
        for p, *locals_ in zip(theta_model.parameters(), *finals):
            p.grad = p.detach() - torch.stack(locals_).mean(0)
        outer.step()
        done += n
    return _params(theta_model)


def test_two_processes_match_references_and_resume_exactly(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # Every rank starts from rank 0's parameters and ends with the same θ.
    for r in ranks:
        assert all(torch.equal(a, b) for a, b in zip(r["start"], _params(_model(0))))
        assert all(torch.equal(a, b) for a, b in zip(r["end"], ranks[0]["end"]))
    want = _simulate([3, 3, 1], h_lr=LR, eta=0.7, mu=0.9)
    for got, ref in zip(ranks[0]["end"], want):
        torch.testing.assert_close(got, ref)
    # Local SGD with H = 1 is DDP, up to the rounding of θ − (θ − mean).
    for r in ranks:
        for got, ref in zip(r["local_sgd"], r["ddp"]):
            torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
