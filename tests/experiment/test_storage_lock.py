"""The storage lock (compare's check-then-enqueue, tune's count-then-ask): a holder
killed with SIGKILL never blocks the next process; a live holder that does not let go
is named in one line, and the wait ends with a clear error instead of never."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from descentlab.engine import mutex

HOLD = """
import sys, time
from descentlab.engine.mutex import storage_lock
with storage_lock(sys.argv[1], "queue:test"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_the_wait_ends(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    monkeypatch.setattr(mutex, "WAIT_SECONDS", 1.0)
    monkeypatch.setattr(mutex, "ANNOUNCE", 0.1)
    proc = _holder(url)
    try:
        start = time.monotonic()
        with pytest.raises(mutex.StorageLockTimeout, match=f"held by process {proc.pid}"):
            with mutex.storage_lock(url, "queue:test"):
                pass
        assert time.monotonic() - start < 10
        err = capsys.readouterr().err
        assert err.count("descentlab: waiting for the lock 'queue:test'") == 1
        assert f"held by process {proc.pid}" in err
    finally:
        proc.kill()
        proc.wait()


def test_a_holder_killed_with_sigkill_never_blocks(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    proc = _holder(url)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    start = time.monotonic()
    with mutex.storage_lock(url, "queue:test"):
        pass
    assert time.monotonic() - start < mutex.ANNOUNCE
    assert "waiting" not in capsys.readouterr().err
