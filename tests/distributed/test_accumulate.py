"""Gradient accumulation in data parallel: the micro-steps before the last skip
the gradient reduction (DDP's no_sync, FSDP2's set_requires_gradient_sync), the
result equals one process accumulating the same global batches, and each rank
reads only its own rows."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from descentlab import optim
from descentlab.distributed import strategy, traffic
from descentlab.train import Trainer

from .group import finish, join

WORLD, STEPS, ACCUMULATE, BATCH = 2, 12, 2, 16


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g, dtype=torch.float64)
    return x, (x[:, :2].sin() * 3).sum(1, keepdim=True)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)).double()


class _Rows(torch.utils.data.Dataset):
    """The training data as a Dataset that remembers which items it was asked for."""

    def __init__(self, x, y):
        self.x, self.y, self.read = x, y, []

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.read.append(int(i))
        return self.x[i], self.y[i]


def _train(kind: str, data) -> tuple[Trainer, traffic.Traffic]:
    model = _model()
    if kind == "fsdp":
        model = strategy.shard(model)
    opt = optim.create("adamw", model.parameters(), lr=1e-2)
    trainer = Trainer(model, opt, nn.functional.mse_loss, batch_size=BATCH, accumulate=ACCUMULATE,
                      distributed=kind != "one", comm_hook="allreduce" if kind == "ddp" else None)
    with traffic.count() as t:
        trainer.fit(data, max_steps=STEPS)
    return trainer, t


def _worker(rank: int, store: str, out: str) -> None:
    join(rank, store)
    try:
        result = {}
        for kind in ("ddp", "fsdp"):
            rows = _Rows(*_data())
            trainer, t = _train(kind, rows)
            state = trainer.model_state()
            result[kind] = {"state": state, "calls": {k: v.calls for k, v in t.by_function.items()},
                            "read": rows.read}
        torch.save(result, f"{out}.{rank}")
        finish()  # group.py: no interpreter teardown once the results are saved
    finally:
        dist.destroy_process_group()


def test_accumulation_reduces_once_per_step_and_equals_one_process(tmp_path):
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(str(tmp_path / "store"), out), nprocs=WORLD, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(WORLD)]
    one, _ = _train("one", _data())
    reference = one.model.state_dict()
    for kind in ("ddp", "fsdp"):
        got = ranks[0][kind]
        for key, value in reference.items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-10, atol=1e-12)
        calls = got["calls"]
        if kind == "ddp":  # every micro-step all-reduces its loss (one number); the gradients go once per step
            assert calls["all_reduce"] == STEPS * ACCUMULATE + STEPS  # without no_sync: 2 * STEPS * ACCUMULATE
        else:  # FSDP2: one reduce-scatter per FSDP group (here one: no repeated blocks) per optimizer
            # step, not per micro-step
            assert calls["reduce_scatter_single"] == STEPS
            assert calls["all_reduce"] == STEPS * ACCUMULATE
    # each rank loaded only its rows of every global batch: half the items one process loads
    for kind in ("ddp", "fsdp"):
        for r in range(WORLD):
            assert len(ranks[r][kind]["read"]) == STEPS * ACCUMULATE * BATCH // WORLD
