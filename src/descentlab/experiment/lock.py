"""One writer per run folder: a lock that dies with its process.

``hold(folder)`` takes an exclusive ``flock`` on ``folder/.descentlab.lock``
for as long as the ``with`` block runs; the kernel drops it when the process
ends, however it ends (SIGKILL included), so a stale lock never blocks a
later ``--resume``. A second process that asks for a held folder gets a
:class:`FolderInUse` (a UsageError: one line, exit 2) naming the folder and
the holder (pid, command, since when), before it has written anything.

Worker processes that a holder starts (``train --nproc N``: rank 0 writes the
files) inherit the holder's claim through ``DESCENTLAB_HELD_FOLDERS`` and do
not lock again. Within one process, holding is re-entrant.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError

LOCK_FILE = ".descentlab.lock"
ENV = "DESCENTLAB_HELD_FOLDERS"
_held: dict[str, int] = {}


class FolderInUse(UsageError):
    """Another process holds the run folder."""


def _key(folder: Path) -> str:
    return str(folder.resolve())


def _inherited() -> set[str]:
    return {p for p in os.environ.get(ENV, "").split(os.pathsep) if p}


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info.get('pid', '?')} ({info.get('command', '?')}, since {since})"


@contextlib.contextmanager
def hold(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder`` (created if missing) for this process; FolderInUse if another holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = _key(folder)
    if key in _held or key in _inherited():
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(
                f"{str(folder)!r} is in use by {_holder(path)}: one process writes a run folder at a time; "
                "wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        os.write(fd, json.dumps({"pid": os.getpid(), "command": command or "python", "since": time.time()}).encode())
        _held[key] = 1
        previous = os.environ.get(ENV)
        os.environ[ENV] = os.pathsep.join(sorted(_inherited() | {key}))  # for the workers we start
        try:
            yield
        finally:
            del _held[key]
            if previous is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous
    finally:
        os.close(fd)  # closing the descriptor releases the lock
