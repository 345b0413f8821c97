"""Checkpoints: atomic writes, corrupt and unsafe files refused, fallback to the previous."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from descentlab.train import checkpoint as ckpt


def test_round_trip_and_keep(tmp_path):
    for step in (10, 20, 30):
        ckpt.save_step(tmp_path, step, {"step": step, "w": torch.full((3,), float(step))}, keep=2)
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path)] == [20, 30]
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 30 and path.name == "step-00000030.pt"
    assert torch.equal(state["w"], torch.full((3,), 30.0))


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    ckpt.save_step(tmp_path, 1, {"step": 1}, keep=5)
    newest = ckpt.save_step(tmp_path, 2, {"step": 2, "big": torch.randn(1000)}, keep=5)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"step-00000002\.pt cannot be loaded: it is truncated or corrupt"):
        state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 1


def test_garbage_checkpoint_is_reported(tmp_path):
    ckpt.save_step(tmp_path, 1, {"step": 1}, keep=5)
    (tmp_path / "step-00000002.pt").write_bytes(b"not a checkpoint at all")
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        state, _ = ckpt.load_latest(tmp_path)
    assert state["step"] == 1


class Exploit:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > should_not_exist.txt",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt.save_step(tmp_path, 1, {"step": 1}, keep=5)
    torch.save({"step": 2, "payload": Exploit()}, tmp_path / "step-00000002.pt")
    with pytest.warns(UserWarning, match="refused as unsafe"):
        state, _ = ckpt.load_latest(tmp_path)
    assert state["step"] == 1
    assert not (tmp_path / "should_not_exist.txt").exists()
    with pytest.raises(ckpt.CheckpointError, match="refused as unsafe"):
        ckpt.safe_load(tmp_path / "step-00000002.pt")


def test_no_valid_checkpoint_at_all_is_an_error(tmp_path):
    (tmp_path / "step-00000001.pt").write_bytes(pickle.dumps("x"))
    with pytest.warns(UserWarning), pytest.raises(ckpt.CheckpointError, match="no valid checkpoint"):
        ckpt.load_latest(tmp_path)
    assert ckpt.load_latest(tmp_path / "empty") is None


def test_a_write_killed_part_way_leaves_the_previous_checkpoint_intact(tmp_path):
    """A real process is killed (os._exit) in the middle of writing the new
    checkpoint's bytes; the old file is untouched and still loads."""
    ckpt.save_step(tmp_path, 1, {"step": 1, "w": torch.ones(10)}, keep=5)
    script = textwrap.dedent(
        f"""
        import os, torch
        from descentlab.train import checkpoint as ckpt
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            f.write(b"PK partial bytes of a checkpoint")
            f.flush()
            os._exit(9)  # killed mid-write
        torch.save = dying_save
        ckpt.save_step({str(tmp_path)!r}, 1, {{"step": 999}}, keep=5)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(10))
