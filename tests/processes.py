"""Real processes for resume and fault tests: start the CLI, SIGKILL it mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
