"""`descentlab train --nproc N`: data-parallel training matches one process,
writes the same files from rank 0, resumes, and fails fast and clearly."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.train import checkpoint as ckpt

ARGS = ["train", "--workload", "linreg", "--steps", "40", "--quiet"]
# An odd global batch of linreg's 720 training rows: the ranks get 360 and 359
# rows, and every second batch has 1 row, so rank 1 has none (it takes part with
# weight 0). The averaged gradient must still be the global batch's.
ODD_BATCH = ["--batch-size", "719"]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _final(out: Path) -> dict:
    state, _ = ckpt.load_latest(out / "checkpoints")
    return state


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((out / "metrics.csv").open())]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run in one process and in two (same global batch size)."""
    root = tmp_path_factory.mktemp("parallel")
    assert main([*ARGS, *ODD_BATCH, "--out", str(root / "one")]) == 0
    start = time.perf_counter()
    assert main([*ARGS, *ODD_BATCH, "--nproc", "2", "--out", str(root / "two")]) == 0
    assert time.perf_counter() - start < 120
    return root / "one", root / "two"


def test_two_processes_write_the_same_files_and_parameters_as_one(runs):
    one, two = runs
    assert _files(one) == _files(two)
    a, b = _final(one), _final(two)
    assert a["loop"]["step"] == b["loop"]["step"] == 40
    assert set(a["model"]) == set(b["model"])  # the plain module's keys, no "module." prefix
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-7)
    # the logged training loss is the global batch's, as in one process
    ra, rb = _rows(one), _rows(two)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        if x["train_loss"]:
            assert float(y["train_loss"]) == pytest.approx(float(x["train_loss"]), rel=1e-5, abs=1e-7)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert sb["steps"] == 40 and sb["status"] == "finished" and sb["nproc"] == 2
    assert sb["final"]["test_r2"] == pytest.approx(sa["final"]["test_r2"], rel=1e-5)


def _interrupt(src: Path, dst: Path) -> int:
    """A copy of a finished run as if it had been killed after its previous checkpoint."""
    shutil.copytree(src, dst)
    (step, newest), *_ = reversed(ckpt.step_checkpoints(dst / "checkpoints"))
    newest.unlink()
    (dst / "summary.json").unlink()
    return ckpt.step_checkpoints(dst / "checkpoints")[-1][0]


def test_a_two_process_checkpoint_resumes_in_one_process(runs, tmp_path):
    one, two = runs
    out = tmp_path / "resumed"
    _interrupt(two, out)
    assert main([*ARGS, *ODD_BATCH, "--out", str(out), "--resume"]) == 0
    a, b = _final(one), _final(out)
    assert b["loop"]["step"] == 40
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-7)


def test_a_diverging_worker_exits_1_without_hanging(tmp_path, capsys):
    out = tmp_path / "run"
    start = time.perf_counter()
    code = main([*ARGS, "--lr", "1e6", "--nproc", "2", "--out", str(out)])
    assert code == 1
    assert time.perf_counter() - start < 120
    err = capsys.readouterr().err
    assert "diverged" in err and "step" in err and "Traceback" not in err
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--nproc", "0"], "invalid nproc=0"),
        (["--nproc", "2", "--batch-size", "1"], "invalid batch_size=1 for nproc=2"),
    ],
)
def test_bad_nproc_is_a_usage_error(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*ARGS, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason=f"GPU-only: needs 2 CUDA devices for NCCL, found {torch.cuda.device_count()}")
def test_two_gpus_with_nccl_match_one_gpu(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*ARGS, "--device", "cuda", "--out", str(one)]) == 0
    assert main([*ARGS, "--device", "cuda", "--nproc", "2", "--out", str(two)]) == 0
    assert _files(one) == _files(two)
    a, b = _final(one), _final(two)
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-6)
