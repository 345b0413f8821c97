"""The run queue's claim (engine/queue.py) on a real SQLite storage."""

from __future__ import annotations

import subprocess
import sys

from descentlab.engine import queue
from descentlab.engine.storage import open_storage


def _queue(tmp_path, n=2):
    url = f"sqlite:///{tmp_path / 'q.sqlite'}"
    storage = open_storage(url, heartbeat=60)
    study, created = queue.open_queue(storage, url, "q", kind="test", settings={"x": 1},
                                      runs=[{"run": i} for i in range(n)])
    assert created
    return study, storage, url


def test_a_claimer_killed_between_its_writes_leaves_a_run_the_next_claim_takes_at_once(tmp_path):
    """The owner is written while the run still waits: a process killed right after it leaves a
    WAITING run (with the dead owner recorded), which the next claim takes without waiting out
    the grace period (here an hour), and records its own owner on."""
    study, storage, url = _queue(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(dead.stdout)
    first = study.get_trials(deepcopy=False)[0]
    storage.set_trial_system_attr(first._trial_id, queue.OWNER, {"host": queue.owner()["host"], "pid": pid,
                                                                "start": None})
    what, trial = queue.claim(study, storage, url, grace=3600)
    assert what == "run" and trial.number == first.number
    assert trial.state.name == "RUNNING" and trial.system_attrs[queue.OWNER] == queue.owner()
    what, second = queue.claim(study, storage, url, grace=3600)
    assert what == "run" and second.number != first.number
    assert queue.claim(study, storage, url, grace=3600) == ("wait", None)  # both run here, alive
