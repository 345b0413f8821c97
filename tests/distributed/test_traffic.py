"""traffic.count(): payload bytes of known collectives, of DDP through the "allreduce"
hook, and DiLoCo's saving over DDP, in two processes."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from descentlab.distributed import hooks, traffic
from descentlab.distributed.diloco import DiLoCo

from .group import finish, join, spawn

WORLD = 2
STEPS = 40
SYNC_EVERY = 20


def test_the_functions_are_restored_even_after_an_error():
    originals = {name: getattr(dist, name) for name in traffic.PAYLOAD if hasattr(dist, name)}
    c10d_all_reduce = dist.distributed_c10d.all_reduce
    with pytest.raises(RuntimeError, match="inside"), traffic.count() as t:
        assert dist.all_reduce is not originals["all_reduce"]
        assert dist.distributed_c10d.all_gather_single is dist.all_gather_single
        raise RuntimeError("inside")
    assert {name: getattr(dist, name) for name in originals} == originals
    assert dist.distributed_c10d.all_reduce is c10d_all_reduce
    assert (t.bytes, t.calls, t.by_function) == (0, 0, {})


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))


def _batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(rank)
    xs = torch.randn(STEPS, 8, 10, generator=g)
    return [(x, x[:, :1].cos()) for x in xs]


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()


def _tallies(t: traffic.Traffic) -> dict[str, tuple[int, int]]:
    return {name: (tally.calls, tally.bytes) for name, tally in t.by_function.items()}


def _worker(rank: int, store: str, out: str) -> None:
    join(rank, store)
    try:
        results = {}
        # Known tensors: 1000 float32 = 4000 bytes, 10 float64 = 80 bytes, ...
        with traffic.count() as outer:
            with traffic.count() as t:
                dist.all_reduce(torch.ones(1000))
            results["all_reduce"] = (t.bytes, t.calls, _tallies(t))
            with traffic.count() as t:
                dist.broadcast(torch.ones(10, dtype=torch.float64), src=0)
                dist.all_reduce(torch.ones(6, dtype=torch.float16), async_op=True).wait()
                dist.all_gather_into_tensor(torch.empty(2 * 7), torch.ones(7))  # it calls all_gather_single
                dist.reduce_scatter_tensor(torch.empty(3), torch.ones(2 * 3))
            results["mixed"] = (t.bytes, t.calls, _tallies(t))
        results["outer"] = (outer.bytes, outer.calls)

        # DDP through the Python all-reduce hook: each step's payload is the gradients, in buckets.
        ddp = DistributedDataParallel(_model())
        hooks.register(ddp, "allreduce")
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
        per_step, calls = [], []
        for x, y in _batches(rank):
            with traffic.count() as t:
                _step(ddp, opt, x, y)
            per_step.append(t.bytes)
            calls.append(t.calls)
        results["ddp"] = (per_step, calls)

        # DiLoCo over the same 40 steps: an all-reduce of the parameters every 20.
        model = _model()
        opt = DiLoCo(torch.optim.SGD(model.parameters(), lr=0.05), sync_every=SYNC_EVERY)
        with traffic.count() as t:
            for x, y in _batches(rank):
                _step(model, opt, x, y)
            opt.sync()  # nothing left to sync after 40 = 2·20 steps
        results["diloco"] = (t.bytes, t.calls)
        results["param_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
        finish()  # group.py: no interpreter teardown once the results are saved
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    return spawn(_worker, tmp_path_factory.mktemp("traffic"))


def test_known_collectives_count_their_payload(counted):
    for r in counted:
        assert r["all_reduce"] == (4000, 1, {"all_reduce": (1, 4000)})
        assert r["mixed"] == (80 + 12 + 28 + 24, 4, {
            "broadcast": (1, 80),
            "all_reduce": (1, 12),
            "all_gather_into_tensor": (1, 28),  # counted once, as the outer call
            "reduce_scatter_tensor": (1, 24),  # the input: 2·3 float32
        })
        assert r["outer"] == (4000 + 144, 5)  # an enclosing count() sees the nested ones too


def test_ddp_with_the_allreduce_hook_sends_its_parameters_each_step(counted):
    for r in counted:
        per_step, calls = r["ddp"]
        assert per_step == [r["param_bytes"]] * STEPS  # exact: the buckets hold every gradient once
        assert all(c >= 1 for c in calls)  # one all-reduce per bucket


def test_diloco_sends_a_twentieth_of_ddp(counted):
    for r in counted:
        diloco_bytes, diloco_calls = r["diloco"]
        ddp_bytes = sum(r["ddp"][0])
        assert diloco_bytes == (STEPS // SYNC_EVERY) * r["param_bytes"] and diloco_calls == STEPS // SYNC_EVERY
        assert diloco_bytes / ddp_bytes <= 1 / 15
        assert diloco_bytes / ddp_bytes == pytest.approx(1 / 20)
