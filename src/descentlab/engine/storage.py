"""Opening a storage URL: Optuna's RDBStorage with heartbeats, and one clear error otherwise."""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Iterator

from ..errors import UsageError

HEARTBEAT_ENV = "DESCENTLAB_TUNE_HEARTBEAT"
HEARTBEAT_INTERVAL = 5  # seconds
GRACE_FACTOR = 3
#: a killed trial is run again up to this many times (a strategy that kills its process, say by
#: running out of memory, then gives way instead of stalling the study)
MAX_RETRY = 3
URL_EXAMPLE = "sqlite:///path/runs.sqlite or postgresql://user@host/db"


def heartbeat_interval() -> int:
    text = os.environ.get(HEARTBEAT_ENV)
    if text is None:
        return HEARTBEAT_INTERVAL
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"invalid {HEARTBEAT_ENV}={text!r}: expected an integer number of seconds >= 1")
    return int(text)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna without its INFO log lines and the warnings of the pieces used on purpose here
    (heartbeats, stale-trial retries and ask/tell with heartbeats are marked experimental)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        try:
            yield
        finally:
            optuna.logging.set_verbosity(level)


def mask(url: str) -> str:
    """``url`` with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - malformed: mask by pattern
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def check_url(url: object, jobs: int = 1) -> None:
    """A storage URL that could be opened (the form only; :func:`open_storage` connects)."""
    if not isinstance(url, str) or "://" not in url:
        raise UsageError(f"invalid storage URL {url!r}: expected an SQLAlchemy URL such as {URL_EXAMPLE}")
    if jobs > 1 and re.fullmatch(r"sqlite:/*(:memory:)?", url):
        raise UsageError(f"storage URL {url!r} is in memory: worker processes cannot share it")


def open_storage(url: str, heartbeat: int, max_retry: int = MAX_RETRY):
    """Optuna's RDBStorage for ``url`` with heartbeats and retries of stale trials; a bad or
    unreachable URL is a UsageError naming it (password hidden)."""
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            with quiet_optuna():
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                    grace_period=GRACE_FACTOR * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry),
                )
        except Exception as exc:  # noqa: BLE001 - a bad or unreachable URL is the user's input
            if "already exists" in str(exc) and attempt < 4:  # another process created the tables meanwhile
                time.sleep(0.1)
                continue
            reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise UsageError(f"cannot open storage URL {mask(url)!r}: {reason}") from None
    raise AssertionError("unreachable")
