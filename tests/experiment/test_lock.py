"""One writer per run folder: a second `train` or `compare` on a folder that
another (real) process holds exits 2 within seconds and changes nothing; the
lock dies with its holder, even by SIGKILL."""

from __future__ import annotations

import contextlib
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
    """What a second writer would change: the lock's holder record, config.json (train), and
    every file's size and modification time (the holder, stopped, changes none); the store's
    runs are counted at the end."""
    config = folder / "config.json"
    return {"lock": (folder / LOCK_FILE).read_text(),
            "config": (config.stat().st_mtime_ns, config.read_text()) if config.exists() else None,
            "files": {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
                      for p in sorted(folder.rglob("*")) if p.is_file()}}


def _stopped(proc) -> bool:
    """The process is stopped (SIGSTOP has landed): state T in /proc/PID/stat."""
    try:
        return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:  # it has ended
        return False


@pytest.mark.parametrize("command", [
    ["train", "--workload", "linreg", "--steps", "5000", "--checkpoint-every", "500", "--quiet"],
    ["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "sgd,adam,adamw,lion", "--steps", "500", "--quiet"],
])
def test_a_second_process_on_a_held_folder_exits_2_and_changes_nothing(command, tmp_path):
    out = tmp_path / "run"
    holder = _cli(*command, "--out", str(out))
    try:
        _wait_for(out / "runs.sqlite", holder)
        while not list(out.glob("**/checkpoints/step-*.pt")):  # mid-training: its files are all there
            assert holder.poll() is None, holder.stderr.read()
            time.sleep(0.02)
        # The holder is stopped (SIGSTOP) while the second process starts and is refused: a live
        # process that holds the lock however long the second one takes to start on a busy machine
        # (so its run need not outlast that: it was 20000 steps, or 4 x 3000; it only has to last
        # from its first checkpoint to the stop, ~3 s of CPU left then), and whose files stay as they
        # are: any change in the folder is the second process's.
        os.kill(holder.pid, signal.SIGSTOP)
        try:
            deadline = time.time() + 30
            while holder.poll() is None and not _stopped(holder):
                assert time.time() < deadline, "the holder did not stop"
                time.sleep(0.01)
            assert holder.poll() is None, "the holder finished before the second process started"
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
            if holder.poll() is None:
                os.kill(holder.pid, signal.SIGCONT)
    finally:
        assert holder.wait(timeout=400) == 0, holder.stderr.read()
    db = sqlite3.connect(out / "runs.sqlite")
    if command[0] == "train":
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert json.loads((out / "summary.json").read_text())["steps"] == 5000
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
    # one other process (its imports take seconds) tries the folder twice: while this one holds
    # it, then after; DESCENTLAB_HELD_FOLDERS left out, or it would inherit this process's claim
    probe = subprocess.Popen([sys.executable, "-c", (
        "import sys; from descentlab.experiment.lock import hold, FolderInUse\n"
        "for _ in sys.stdin:\n"
        "    try:\n        with hold(sys.argv[1]): print('held', flush=True)\n"
        "    except FolderInUse as e:\n        print('in use:', e, flush=True)\n"), str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "DESCENTLAB_HELD_FOLDERS"})

    def attempt() -> str:
        with contextlib.suppress(BrokenPipeError):  # it died: its stderr says why
            probe.stdin.write("\n")
            probe.stdin.flush()
        return probe.stdout.readline()

    answers = []
    try:
        outside = os.environ.get("DESCENTLAB_HELD_FOLDERS")
        with hold(tmp_path):
            with hold(tmp_path):
                pass
            answers.append(attempt())
        assert os.environ.get("DESCENTLAB_HELD_FOLDERS") == outside
        answers.append(attempt())
    finally:
        with contextlib.suppress(BrokenPipeError):
            probe.stdin.close()
        probe.wait(timeout=120)
    err = probe.stderr.read()
    assert probe.returncode == 0, err
    assert answers[0].startswith("in use:") and f"process {os.getpid()}" in answers[0], (answers, err)
    assert answers[1] == "held\n", (answers, err)
