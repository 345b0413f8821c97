"""Real processes for resume and fault tests: start the CLI, SIGKILL it mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from descentlab.train import checkpoint as ckpt


def cli(*args: str, **kw) -> subprocess.Popen:
    """``python -m descentlab ARGS`` in a new process, its output captured."""
    return subprocess.Popen([sys.executable, "-m", "descentlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def kill_after_checkpoint(proc: subprocess.Popen, checkpoints: Path, step: int, timeout: float = 240) -> int:
    """SIGKILL ``proc`` once it has written a checkpoint at ``step`` or later;
    returns the newest checkpoint's step. Fails if the run ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(s >= step for s, _ in ckpt.step_checkpoints(checkpoints)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return max(s for s, _ in ckpt.step_checkpoints(checkpoints))


@contextlib.contextmanager
def meanwhile(*args: str) -> Iterator[list[str]]:
    """``python -m descentlab ARGS`` started, the body run in this process meanwhile (one
    process fewer), then the command's end awaited: it must exit 0. Yields a list that then
    holds its stderr; the command is killed if the body fails."""
    proc = subprocess.Popen([sys.executable, "-m", "descentlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    try:
        yield err
        err.append(proc.communicate(timeout=300)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
