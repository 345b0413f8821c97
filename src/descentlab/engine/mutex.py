"""A lock over a whole storage, for the few steps that must not interleave across processes
and machines (``tune``'s count-then-ask; a comparison's check-then-enqueue).

SQLite: an exclusive ``flock`` on a file beside the database (one machine, as SQLite
itself). PostgreSQL: a session-level advisory lock (``pg_advisory_lock``), held by one
connection and dropped by the server when that connection dies. Both die with their
process, so a SIGKILLed holder never blocks the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def storage_lock(url: str, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of the storage at ``url`` for the ``with`` block (waits for it)."""
    if url.startswith(("postgresql", "postgres")):
        from ..store.runs import engine

        with engine(url).connect() as db:
            import sqlalchemy as sa

            db.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _key(name)})
            db.commit()
            try:
                yield
            finally:
                db.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
                db.commit()
        return
    fd = os.open(_lock_path(url, name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock, as does the process's death
