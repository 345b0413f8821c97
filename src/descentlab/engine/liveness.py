"""Which tune trials are still alive: each trial's owner process and its heartbeat.

A trial records its owner (host, pid, process start time) as the system attribute
:data:`OWNER` when it is created, and a heartbeat every few seconds while it trains.
Before a worker counts the study's trials, :func:`fail_dead` fails the RUNNING
trials whose owner on this machine is gone (at once: a SIGKILLed ``tune`` is
rerun without waiting), those with no owner after the grace period (killed while
being created), and — through Optuna's ``fail_stale_trials`` — those whose
heartbeat is stale (owners on other machines). Optuna's retry callback then
queues each failed trial again with the same parameters.
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import threading
from pathlib import Path
from typing import Any

OWNER = "descentlab:owner"


def process_start(pid: int) -> str | None:
    """The start time of a live process (``/proc/PID/stat`` field 22), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is dead too


def owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}


def alive(owner: dict[str, Any]) -> bool:
    if Path("/proc/self/stat").exists():
        start = process_start(int(owner["pid"]))
        return start is not None and (owner.get("start") is None or start == owner["start"])
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def dead(trial: Any, host: str, grace: float) -> bool:
    owner = trial.system_attrs.get(OWNER)
    if owner is None:  # its process died while creating it (the owner is recorded right after), or it is foreign
        started = trial.datetime_start
        return started is not None and (datetime.datetime.now() - started).total_seconds() > grace
    return owner.get("host") == host and not alive(owner)


def fail_dead(study: Any, storage: Any, grace: float) -> None:
    """Fail (and queue again) the RUNNING trials of processes of this machine that are gone, and
    those without an owner after the grace period; then those whose heartbeat is stale (processes
    elsewhere)."""
    import optuna
    from optuna.trial import TrialState

    host, study_id = socket.gethostname(), storage.get_study_id_from_name(study.study_name)
    retry = storage.get_heartbeat_stale_trial_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not dead(t, host, grace):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL) and retry is not None:
                retry(study, copy.deepcopy(storage.get_trial(trial_id)))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    optuna.storages.fail_stale_trials(study)


class Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds while the ``with`` block runs."""

    def __init__(self, storage: Any, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="descentlab-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a busy database: the next beat comes soon
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
