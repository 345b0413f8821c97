"""One writer per run folder: a second `train` or `compare` on a folder that
another (real) process holds exits 2 within seconds and changes nothing; the
lock dies with its holder, even by SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from descentlab.experiment.lock import LOCK_FILE, FolderInUse, hold


def _cli(*args):
    return subprocess.Popen([sys.executable, "-m", "descentlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _snapshot(folder: Path) -> dict[str, object]:
    """What the holder wrote once and a second writer would change: the lock's
    holder record and config.json (train); the store's runs are counted at the end."""
    config = folder / "config.json"
    return {"lock": (folder / LOCK_FILE).read_text(),
            "config": (config.stat().st_mtime_ns, config.read_text()) if config.exists() else None}


@pytest.mark.parametrize("command", [
    ["train", "--workload", "linreg", "--steps", "20000", "--checkpoint-every", "1000", "--quiet"],
    ["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "sgd,adam,adamw,lion", "--steps", "3000", "--quiet"],
])
def test_a_second_process_on_a_held_folder_exits_2_and_changes_nothing(command, tmp_path):
    out = tmp_path / "run"
    holder = _cli(*command, "--out", str(out))
    try:
        _wait_for(out / "runs.sqlite", holder)
        before = _snapshot(out)
        start = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "descentlab", *command, "--out", str(out)],
                                capture_output=True, text=True, timeout=60)
        took = time.monotonic() - start
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and str(out) in lines[0] and f"process {holder.pid}" in lines[0], lines
        assert took < 30, f"the second process took {took:.1f} s to give up"
        assert holder.poll() is None, "the holder should still be running"
        assert _snapshot(out) == before
    finally:
        assert holder.wait(timeout=400) == 0, holder.stderr.read()
    db = sqlite3.connect(out / "runs.sqlite")
    if command[0] == "train":
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert json.loads((out / "summary.json").read_text())["steps"] == 20000
    else:
        assert db.execute("SELECT COUNT(*) FROM runs WHERE group_name = 'compare'").fetchone()[0] == 4


def test_the_lock_dies_with_its_process_even_by_sigkill(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--workload", "linreg", "--steps", "50000", "--checkpoint-every", "500", "--quiet", "--out", str(out)]
    holder = _cli(*args)
    _wait_for(out / "runs.sqlite", holder)
    while not list((out / "checkpoints").glob("step-*.pt")):  # mid-training, as a user's kill comes
        assert holder.poll() is None, holder.stderr.read()
        time.sleep(0.02)
    with pytest.raises(FolderInUse, match=f"process {holder.pid}"):
        with hold(out):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with hold(out):  # free again: a --resume can take it
        assert (out / LOCK_FILE).exists()


def test_holding_is_reentrant_in_one_process_and_released_after(tmp_path):
    with hold(tmp_path):
        with hold(tmp_path):
            pass
        probe = subprocess.run([sys.executable, "-c", (
            "import sys; from descentlab.experiment.lock import hold, FolderInUse\n"
            "try:\n    hold(sys.argv[1]).__enter__()\nexcept FolderInUse as e:\n    print(e); sys.exit(3)\n"), str(tmp_path)],
            capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "DESCENTLAB_HELD_FOLDERS"})
        assert probe.returncode == 3, probe.stdout + probe.stderr
    probe = subprocess.run([sys.executable, "-c", "import sys; from descentlab.experiment.lock import hold\n"
                            "with hold(sys.argv[1]): pass", str(tmp_path)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
