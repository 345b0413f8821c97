"""A lock over a whole storage, for the few steps that must not interleave across processes
and machines (``tune``'s count-then-ask; a comparison's check-then-enqueue).

SQLite: an exclusive ``flock`` on a file beside the database (one machine, as SQLite
itself). PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``), held by one
connection and dropped by the server when that connection dies. Both die with their
process, so a SIGKILLed holder never blocks the others.

The sections it guards take milliseconds, so a wait is short; a holder that is alive but
stuck (stopped, or its database connection hung) would make the others wait, so a wait
says once, on stderr, what it waits for (the holder's pid, on SQLite) and ends after
:data:`WAIT_SECONDS` with :class:`StorageLockTimeout`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: seconds a process waits for another's storage lock before giving up
WAIT_SECONDS = 300.0
#: seconds between two tries, and before a wait is announced
POLL, ANNOUNCE = 0.05, 2.0


class StorageLockTimeout(RuntimeError):
    """Another process held a storage lock for longer than :data:`WAIT_SECONDS`."""


def _key(name: str) -> int:
    """A signed 64-bit key for ``name`` (advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _lock_path(url: str, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    path = url.split(":///", 1)[1] if url.startswith("sqlite:///") else ""
    if path and path != ":memory:":
        db = Path(path)
        return db.with_name(f".{db.name}.{safe}.lock")
    return Path(tempfile.gettempdir()) / f"descentlab-{_key(url) & 0xFFFFFFFF:08x}.{safe}.lock"


def _wait(try_lock: Callable[[], bool], what: Callable[[], str]) -> None:
    """Call ``try_lock`` until it succeeds; say once what it waits for, and give up
    after WAIT_SECONDS."""
    start = time.monotonic()
    announced = False
    while not try_lock():
        waited = time.monotonic() - start
        if waited >= WAIT_SECONDS:
            raise StorageLockTimeout(f"gave up after {WAIT_SECONDS:.0f} s waiting for {what()}")
        if not announced and waited >= ANNOUNCE:
            print(f"descentlab: waiting for {what()} (at most {WAIT_SECONDS:.0f} s)", file=sys.stderr, flush=True)
            announced = True
        time.sleep(POLL)


@contextlib.contextmanager
def storage_lock(url: str, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of the storage at ``url`` for the ``with`` block (waits for it)."""
    if url.startswith(("postgresql", "postgres")):
        from ..store.runs import engine

        with engine(url).connect() as db:
            import sqlalchemy as sa

            def take() -> bool:
                got = db.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(name)}).scalar()
                db.commit()
                return bool(got)

            _wait(take, lambda: f"the lock {name!r} of the database, held by another connection")
            try:
                yield
            finally:
                db.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
                db.commit()
        return
    path = _lock_path(url, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def holder() -> str:
            try:
                pid = path.read_text().strip()
            except OSError:
                pid = ""
            return f"the lock {name!r} ({path}){f', held by process {pid}' if pid else ''}"

        _wait(take, holder)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock, as does the process's death
