"""CUDA paths. CI has no GPU: every test here skips with the reason; they run
on a GPU machine (e.g. the device tool) whenever one is at hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descentlab import optim
from descentlab.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU-only: no CUDA device on this machine")


@pytest.mark.parametrize("name", optim.available())
def test_multi_tensor_path_equals_for_loop_on_cuda(name):
    shapes = [(64, 32), (32, 64)] if name == "muon" else [(64, 32), (32,), (16, 64)]
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(20)]
    results = []
    for foreach in (False, True):
        params = [p.clone().cuda() for p in start]
        opt = optim.create(name, params, foreach=foreach)
        for step in grads:
            for p, gr in zip(params, step):
                p.grad = gr.cuda()
            opt.step()
        results.append([p.cpu() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_trainer_auto_device_and_fp16_with_grad_scaler():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    trainer = Trainer(model, optim.create("adamw", model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                      batch_size=32, precision="fp16", device="auto")
    assert trainer.device.type == "cuda" and trainer.scaler is not None
    before = trainer.evaluate((x, y))["loss"]
    trainer.fit((x, y), epochs=5)
    assert trainer.evaluate((x, y))["loss"] < before


def test_bf16_autocast_on_cuda():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = x.sum(1, keepdim=True)
    model = nn.Linear(10, 1)
    trainer = Trainer(model, optim.create("adam", model.parameters(), lr=1e-2), nn.MSELoss(),
                      batch_size=32, precision="bf16", device="cuda")
    before = trainer.evaluate((x, y))["loss"]
    trainer.fit((x, y), epochs=5)
    assert trainer.evaluate((x, y))["loss"] < before
