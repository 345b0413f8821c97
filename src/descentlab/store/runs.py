"""The run store: every run's configuration and metrics in one SQLite file.

Tables::

    runs(id, name, group_name, started, finished, status, config, versions, summary)
    metrics(run_id, step, seconds, key, value)

``config``, ``versions`` and ``summary`` are JSON text. One row per logged
metric value keeps the schema fixed whatever a run logs. Uses only the
standard library's sqlite3.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    group_name TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    seconds REAL,
    key TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, key, step);
"""


def versions() -> dict[str, str]:
    """Versions of what produced a result, saved beside it so it can be rerun."""
    import numpy
    import torch

    from .. import __version__

    return {
        "descentlab": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": _platform(),
    }


def _platform() -> str:
    """``platform.platform()`` without its ``uname -p`` subprocess: a child forked
    while a run folder's lock is held shares the lock until it execs, so a holder
    killed at that moment would leave the folder held for a moment after its death."""
    u = os.uname()
    libc, version = platform.libc_ver()
    return "-".join(part for part in (u.sysname, u.release, u.machine, f"with-{libc}{version}" if libc else "") if part)


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, tuple):
            return list(obj)
        return str(obj)

    return json.dumps(value, default=default, sort_keys=True)


class RunStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def start(self, name: str, config: Mapping[str, Any], group: str = "") -> int:
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO runs (name, group_name, started, status, config, versions) VALUES (?, ?, ?, ?, ?, ?)",
                (name, group, time.time(), "running", _json(config), _json(versions())),
            )
            return int(cur.lastrowid)

    def find_running(self, name: str, group: str = "") -> int | None:
        """The newest unfinished run of that name (to continue it after a resume)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT id FROM runs WHERE name = ? AND group_name = ? AND status = 'running' ORDER BY id DESC LIMIT 1",
                (name, group),
            ).fetchone()
        return None if row is None else int(row["id"])

    def finish(self, run_id: int, rows: Iterable[Mapping[str, Any]], summary: Mapping[str, Any], status: str = "finished") -> None:
        """Write all metric rows of the run (replacing any) and its summary, in one transaction."""
        values = []
        for row in rows:
            step, seconds = int(row["step"]), row.get("seconds")
            for key, value in row.items():
                if key in ("step", "seconds") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                values.append((run_id, step, seconds, key, float(value) if math.isfinite(value) else None))
        with self._connect() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO metrics (run_id, step, seconds, key, value) VALUES (?, ?, ?, ?, ?)", values)
            db.execute(
                "UPDATE runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                (time.time(), status, _json(summary), run_id),
            )

    def runs(self, group: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs", ()
        if group is not None:
            query, args = query + " WHERE group_name = ?", (group,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        out = []
        for r in rows:
            item = dict(r)
            for key in ("config", "versions", "summary"):
                item[key] = json.loads(item[key]) if item[key] else None
            out.append(item)
        return out

    def metric(self, run_id: int, key: str) -> tuple[list[int], list[float], list[float | None]]:
        """``(steps, values, seconds)`` of one metric of one run, in step order."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT step, value, seconds FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", (run_id, key)
            ).fetchall()
        return [r["step"] for r in rows], [r["value"] for r in rows], [r["seconds"] for r in rows]

    def keys(self, run_id: int) -> list[str]:
        with self._connect() as db:
            rows = db.execute("SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key", (run_id,)).fetchall()
        return [r["key"] for r in rows]
