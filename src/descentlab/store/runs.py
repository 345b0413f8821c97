"""The run store: every run's configuration and metrics in one database.

Tables (beside Optuna's, when the database is also a comparison's or a
study's storage)::

    runs(id, name, group_name, study, started, finished, status, config, versions, summary)
    metrics(run_id, step, seconds, key, value)

``config``, ``versions`` and ``summary`` are JSON text. One row per logged
metric value keeps the schema fixed whatever a run logs. ``study`` names the
comparison a run belongs to when one database holds several (``compare
--storage URL``); it is empty in a folder's own ``runs.sqlite``.

The database is an SQLite file (a path) or any SQLAlchemy URL
(``postgresql://user@host/db``), through SQLAlchemy Core: the same code for a
folder on one machine and a server that many machines write to.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

_META = sa.MetaData()
RUNS = sa.Table(
    "runs", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("group_name", sa.Text, nullable=False, server_default=""),
    sa.Column("study", sa.Text, nullable=False, server_default=""),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("versions", sa.Text, nullable=False),
    sa.Column("summary", sa.Text),
)
METRICS = sa.Table(
    "metrics", _META,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.Float),
    sa.Index("metrics_run", "run_id", "key", "step"),
)
_engines: dict[tuple[int, str], sa.engine.Engine] = {}


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


def url_of(target: str | os.PathLike) -> str:
    """An SQLAlchemy URL for ``target``: a URL as it is, a path as an SQLite file."""
    text = os.fspath(target)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def engine(url: str) -> sa.engine.Engine:
    """One engine per URL and process (a forked worker makes its own)."""
    key = (os.getpid(), url)
    if key not in _engines:
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        _engines[key] = sa.create_engine(url, **kwargs)
    return _engines[key]


def forget(url: str) -> None:
    """Close this process's connections to ``url`` (before its SQLite file is deleted)."""
    found = _engines.pop((os.getpid(), url), None)
    if found is not None:
        found.dispose()


class RunStore:
    """Runs and their metrics in the database at ``target`` (a path or an SQLAlchemy URL)."""

    def __init__(self, target: str | os.PathLike):
        self.url = url_of(target)
        self.path = Path(self.url.removeprefix("sqlite:///")) if self.url.startswith("sqlite:///") else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = engine(self.url)
        for attempt in range(5):
            try:
                _META.create_all(self.engine)
                break
            except sa.exc.OperationalError:  # another process is creating them (SQLite: locked)
                if attempt == 4:
                    raise
                time.sleep(0.2)
            except sa.exc.IntegrityError:  # another process created them meanwhile (PostgreSQL)
                time.sleep(0.1)
        with self.engine.begin() as db:  # a runs.sqlite of an earlier version: no study column
            columns = {c["name"] for c in sa.inspect(db).get_columns("runs")}
            if "study" not in columns:
                db.execute(sa.text("ALTER TABLE runs ADD COLUMN study TEXT NOT NULL DEFAULT ''"))

    def start(self, name: str, config: Mapping[str, Any], group: str = "", study: str = "") -> int:
        with self.engine.begin() as db:
            result = db.execute(RUNS.insert().values(
                name=name, group_name=group, study=study, started=time.time(), status="running",
                config=_json(config), versions=_json(versions())))
            return int(result.inserted_primary_key[0])

    def find_running(self, name: str, group: str = "", study: str = "") -> int | None:
        """The newest unfinished run of that name (to continue it after a resume)."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(RUNS.c.id).where(
                RUNS.c.name == name, RUNS.c.group_name == group, RUNS.c.study == study, RUNS.c.status == "running",
            ).order_by(RUNS.c.id.desc()).limit(1)).first()
        return None if row is None else int(row.id)

    @staticmethod
    def _metric_rows(run_id: int, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        values = []
        for row in rows:
            step, seconds = int(row["step"]), row.get("seconds")
            for key, value in row.items():
                if key in ("step", "seconds") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                values.append({"run_id": run_id, "step": step, "seconds": seconds, "key": key,
                               "value": float(value) if math.isfinite(value) else None})
        return values

    def finish(self, run_id: int, rows: Iterable[Mapping[str, Any]], summary: Mapping[str, Any], status: str = "finished") -> None:
        """Write all metric rows of the run (replacing any) and its summary, in one transaction."""
        values = self._metric_rows(run_id, rows)
        with self.engine.begin() as db:
            db.execute(METRICS.delete().where(METRICS.c.run_id == run_id))
            if values:
                db.execute(METRICS.insert(), values)
            db.execute(RUNS.update().where(RUNS.c.id == run_id).values(
                finished=time.time(), status=status, summary=_json(summary)))

    def record(self, name: str, config: Mapping[str, Any], rows: Iterable[Mapping[str, Any]],
               summary: Mapping[str, Any], *, status: str, group: str = "", study: str = "") -> int:
        """A finished run in one transaction, replacing any run of the same name in the same group
        and study: a run done twice (its worker died after recording it, say) counts once."""
        with self.engine.begin() as db:
            old = [r.id for r in db.execute(sa.select(RUNS.c.id).where(
                RUNS.c.name == name, RUNS.c.group_name == group, RUNS.c.study == study))]
            if old:
                db.execute(METRICS.delete().where(METRICS.c.run_id.in_(old)))
                db.execute(RUNS.delete().where(RUNS.c.id.in_(old)))
            now = time.time()
            run_id = int(db.execute(RUNS.insert().values(
                name=name, group_name=group, study=study, started=now, finished=now, status=status,
                config=_json(config), versions=_json(versions()), summary=_json(summary))).inserted_primary_key[0])
            values = self._metric_rows(run_id, rows)
            if values:
                db.execute(METRICS.insert(), values)
        return run_id

    def runs(self, group: str | None = None, study: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(RUNS)
        if group is not None:
            query = query.where(RUNS.c.group_name == group)
        if study is not None:
            query = query.where(RUNS.c.study == study)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(RUNS.c.id)).mappings().all()
        out = []
        for r in rows:
            item = dict(r)
            for key in ("config", "versions", "summary"):
                item[key] = json.loads(item[key]) if item[key] else None
            out.append(item)
        return out

    def delete(self, group: str, study: str) -> None:
        """Remove every run of ``group`` in ``study`` and their metrics."""
        with self.engine.begin() as db:
            ids = [r.id for r in db.execute(sa.select(RUNS.c.id).where(RUNS.c.group_name == group,
                                                                        RUNS.c.study == study))]
            if ids:
                db.execute(METRICS.delete().where(METRICS.c.run_id.in_(ids)))
                db.execute(RUNS.delete().where(RUNS.c.id.in_(ids)))

    def studies(self, group: str) -> list[str]:
        """The study names that hold runs of ``group``, in the order they were first written."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(RUNS.c.study, sa.func.min(RUNS.c.id).label("first")).where(
                RUNS.c.group_name == group).group_by(RUNS.c.study).order_by("first")).all()
        return [r.study for r in rows]

    def metric(self, run_id: int, key: str) -> tuple[list[int], list[float], list[float | None]]:
        """``(steps, values, seconds)`` of one metric of one run, in step order."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(METRICS.c.step, METRICS.c.value, METRICS.c.seconds).where(
                METRICS.c.run_id == run_id, METRICS.c.key == key).order_by(METRICS.c.step)).all()
        return [r.step for r in rows], [r.value for r in rows], [r.seconds for r in rows]

    def keys(self, run_id: int) -> list[str]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(METRICS.c.key).where(METRICS.c.run_id == run_id).distinct()
                              .order_by(METRICS.c.key)).all()
        return [r.key for r in rows]
