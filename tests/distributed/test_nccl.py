"""The CUDA/NCCL paths of the strategies: two GPUs against one. Skipped without two GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.train import checkpoint as ckpt

GPUS = torch.cuda.device_count()
pytestmark = pytest.mark.skipif(GPUS < 2, reason=f"GPU-only: needs 2 CUDA devices for NCCL, found {GPUS}")
DOUBLE = ["train", "--workload", f"{Path(__file__).parent / 'double_workload.py'}:make", "--quiet",
          "--device", "cuda", "--steps", "100"]


@pytest.mark.parametrize("strategy, opt", [("ddp", "adamw"), ("zero", "adafactor"), ("fsdp", "muon"),
                                           ("fsdp", "lamb"), ("diloco", "adamw")])
def test_two_gpus_equal_one(tmp_path, strategy, opt):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*DOUBLE, "--optimizer", opt, "--out", str(one)]) == 0
    assert main([*DOUBLE, "--optimizer", opt, "--nproc", "2", "--strategy", strategy, "--out", str(two)]) == 0
    a, _ = ckpt.load_latest(one / "checkpoints")
    b, _ = ckpt.load_latest(two / "checkpoints")
    if strategy == "diloco":  # another algorithm: it trains, and its checkpoint holds both ranks
        assert len(b["ranks"]) == 2 and b["loop"]["step"] == 100
        return
    for k in a["model"]:
        assert float((a["model"][k] - b["model"][k]).norm() / a["model"][k].norm()) <= 1e-5, k
