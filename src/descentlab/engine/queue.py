"""A list of runs as enqueued trials of an Optuna study: each taken by exactly one worker.

The study is created with one WAITING trial per run (``Study.enqueue_trial``, the run's
key in the user attribute :data:`RUN`) and its settings in the user attribute
:data:`SETTINGS`, under :func:`~descentlab.engine.mutex.storage_lock`, so that a second
command with the same name finds it and either continues it (same settings) or is
refused (other settings). A worker :func:`claim` s a run by the atomic WAITING ->
RUNNING transition of ``storage.set_trial_state_values`` (under the storage lock too:
SQLite has no ``SELECT ... FOR UPDATE``), records itself as the owner and beats while
it runs; :func:`descentlab.engine.liveness.fail_dead` fails the runs of dead owners,
and Optuna's retry callback queues each again with the same key. The run is done when
the worker tells the trial COMPLETE, after it recorded the run's results (a result
recorded twice replaces itself: :meth:`descentlab.store.RunStore.record`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UsageError
from .liveness import OWNER, fail_dead, owner
from .mutex import storage_lock
from .storage import mask

KIND = "descentlab:kind"
SETTINGS = "descentlab:settings"
RUN = "descentlab:run"
LIVE = ("WAITING", "RUNNING", "COMPLETE")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def find(storage: Any, name: str) -> Any | None:
    """The study ``name`` in ``storage``, or None."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def names(storage: Any, kind: str | None = None) -> list[str]:
    """The descentlab studies in ``storage`` (of ``kind``, when given)."""
    import optuna

    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if kind is None and KIND in summary.user_attrs or kind is not None and summary.user_attrs.get(KIND) == kind:
            out.append(summary.study_name)
    return out


def differences(saved: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    keys = [*mine, *(k for k in saved if k not in mine)]  # in the order of the settings
    return [key for key in keys if saved.get(key) != mine.get(key)]


def _shown(key: str, value: Any) -> str:
    if key == "strategies" and isinstance(value, list):
        return ",".join(str(s.get("label")) for s in value if isinstance(s, dict)) or "[]"
    return repr(value)


def check_same(study: Any, url: str, name: str, kind: str, settings: Mapping[str, Any]) -> None:
    """The study ``name`` was made by descentlab ``kind`` with these ``settings``, else one UsageError
    naming the first setting that differs."""
    saved_kind, saved = study.user_attrs.get(KIND), study.user_attrs.get(SETTINGS)
    if saved_kind != kind or saved is None:
        raise UsageError(f"study {name!r} in {mask(url)!r} is not a descentlab {kind}: use another name")
    settings = _plain(settings)
    diff = differences(saved, settings)
    if not diff:
        return
    key = diff[0]
    was, now = _shown(key, saved.get(key)), _shown(key, settings.get(key))
    if was == now:  # the same labels with other settings
        was, now = "other settings", "these"
    noun = {"compare": "comparison", "tune": "tune study"}.get(kind, kind)
    raise UsageError(f"{noun} {name!r} in {mask(url)!r} was started with {key} {was}, not {now}: run it again "
                     "with the same settings to continue it, or use another --name or --out (or --overwrite "
                     "to replace it)")


def open_queue(storage: Any, url: str, name: str, *, kind: str, settings: Mapping[str, Any],
               runs: Sequence[Mapping[str, Any]], direction: str = "maximize",
               attrs: Mapping[str, Any] | None = None) -> tuple[Any, bool]:
    """The study ``name`` holding ``runs``: created with them enqueued, or, when it exists with
    the same ``settings``, loaded with every run that has no live trial enqueued again (a run
    whose retries ran out). Returns ``(study, created)``. Another study of that name is a
    UsageError naming the first differing setting; nothing in the storage is changed then.
    ``attrs``: more user attributes of a new study, set before any run is enqueued."""
    import optuna

    settings = _plain(settings)
    with storage_lock(url, f"queue:{name}"):
        study = find(storage, name)
        if study is not None:
            check_same(study, url, name, kind, settings)
            live = {json.dumps(t.user_attrs.get(RUN), sort_keys=True)
                    for t in study.get_trials(deepcopy=False) if t.state.name in LIVE}
            for run in runs:
                if json.dumps(_plain(run), sort_keys=True) not in live:
                    study.enqueue_trial({}, user_attrs={RUN: _plain(run)})
            return study, False
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        study.set_user_attr(KIND, kind)
        study.set_user_attr(SETTINGS, settings)
        for key, value in (attrs or {}).items():
            study.set_user_attr(key, _plain(value))
        for run in runs:
            study.enqueue_trial({}, user_attrs={RUN: _plain(run)})
        return study, True


def counts(study: Any) -> dict[str, int]:
    out = {"WAITING": 0, "RUNNING": 0, "COMPLETE": 0, "FAIL": 0, "PRUNED": 0}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def claim(study: Any, storage: Any, url: str, grace: float) -> tuple[str, Any]:
    """``("run", trial)``: a run this worker now owns (RUNNING, owner and first heartbeat
    recorded); ``("wait", None)``: none is waiting but some are running elsewhere (one may
    die and come back); ``("done", None)``: nothing is waiting or running."""
    from optuna.trial import TrialState

    with storage_lock(url, f"queue:{study.study_name}"):
        fail_dead(study, storage, grace)
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state != TrialState.WAITING:
                continue
            # the owner first, while the run is still WAITING: a kill between the two writes leaves
            # a waiting run that the next claim takes at once; the other order left a RUNNING one
            # without an owner, failed only after the grace period
            storage.set_trial_system_attr(t._trial_id, OWNER, owner())
            if storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                storage.record_heartbeat(t._trial_id)
                return "run", storage.get_trial(t._trial_id)
        if any(t.state == TrialState.RUNNING for t in trials):
            return "wait", None
        return "done", None


def drain(entry: Any, plan: Any, jobs: int, storage: Any, name: str, *, log: Any, on_message: Any,
          process_name: str, restarts: int = 3) -> None:
    """Run ``entry(plan, send)`` in ``jobs`` worker processes until the queue ``name`` has nothing
    waiting or running: workers that died left their runs in it, so new ones are started for them
    (at most ``restarts`` rounds)."""
    from .workers import run_workers

    for _ in range(restarts):
        if not run_workers(entry, plan, jobs, threads=1, log=log, name=process_name, on_message=on_message,
                           deaths_fatal=False, fork=True):
            return
        n = counts(find(storage, name))
        if not n["WAITING"] and not n["RUNNING"]:
            return
