"""Many machines on one database: a real PostgreSQL server (tests/postgres.py, on a Unix
socket only), a `compare` and a `descentlab worker` process on one comparison finish every
run exactly once, and `descentlab report URL` renders it from the database alone."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from descentlab.cli import main
from tests.postgres import Server

NAME = "pg-compare"
# 6 runs of ~2 s each on one core (5000 steps before): the worker, whose imports take ~2.5 s of
# CPU, claims its first run well before the coordinator could have claimed the sixth (after its
# warm-up and five runs, ~12 s of CPU; tried here, it joined during the third and ran two)
ARGS = ["compare", "--workload", "digits-mlp", "--optimizers", "momentum,adam", "--seeds", "3", "--steps", "2000",
        "--eval-every", "250", "--target", "0.95", "--quiet", "--jobs", "1", "--name", NAME]


@pytest.fixture(scope="module")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="dl-pg-"))  # short: a Unix socket path has ~100 characters
    server = Server(root)
    reason = server.start()
    try:
        if reason:
            pytest.skip(reason=f"no PostgreSQL server: {reason}")
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def query(url: str, sql: str) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return [tuple(r) for r in db.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _started(url: str) -> bool:
    try:
        return bool(query(url, f"SELECT 1 FROM studies WHERE study_name = '{NAME}'"))
    except Exception:  # noqa: BLE001 - the tables are not made yet
        return False


def test_two_workers_on_one_comparison_finish_every_run_exactly_once(postgres, tmp_path):
    out = tmp_path / "cmp"
    coordinator = subprocess.Popen([sys.executable, "-m", "descentlab", *ARGS, "--storage", postgres, "--out", str(out)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _started(postgres):
        assert coordinator.poll() is None, coordinator.stderr.read()
        assert time.time() < deadline, "the comparison did not start"
        time.sleep(0.1)
    worker = subprocess.run([sys.executable, "-m", "descentlab", "worker", "--storage", postgres, "--study", NAME,
                             "--jobs", "1", "--out", str(tmp_path / "elsewhere")],
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    stdout, stderr = coordinator.communicate(timeout=300)
    assert coordinator.returncode == 0, stderr

    trials = query(postgres, f"""
        SELECT t.state, r.value_json, o.value_json FROM trials t JOIN studies s ON s.study_id = t.study_id
        LEFT JOIN trial_user_attributes r ON r.trial_id = t.trial_id AND r.key = 'descentlab:run'
        LEFT JOIN trial_system_attributes o ON o.trial_id = t.trial_id AND o.key = 'descentlab:owner'
        WHERE s.study_name = '{NAME}'""")
    assert [t[0] for t in trials] == ["COMPLETE"] * 6, trials
    keys = [(json.loads(r)["strategy"], json.loads(r)["seed"]) for _, r, _ in trials]
    assert sorted(keys) == sorted((s, k) for s in ("momentum", "adam") for k in range(3)), "each run exactly once"
    pids = {json.loads(o)["pid"] for _, _, o in trials}
    assert len(pids) == 2, f"both processes ran runs: {pids}"
    assert query(postgres, f"SELECT COUNT(*), COUNT(DISTINCT name) FROM runs WHERE study = '{NAME}'") == [(6, 6)]
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["strategy"], int(r["seed"])) for r in rows] == [(s, k) for k in range(3) for s in ("momentum", "adam")]

    # the report, from the URL alone, on another folder
    assert main(["report", postgres, "--study", NAME, "--out", str(tmp_path / "elsewhere-report")]) == 0
    html = (tmp_path / "elsewhere-report" / "report.html").read_text()
    assert "momentum" in html and "adam" in html and "data:image/png;base64" in html


def test_a_second_comparison_of_that_name_with_other_settings_is_refused(postgres, tmp_path, capsys):
    name = "pg-refused"
    small = ["compare", "--workload", "digits-mlp", "--optimizers", "adam", "--steps", "20", "--quiet", "--jobs", "1",
             "--storage", postgres, "--name", name]
    assert main([*small, "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    before = query(postgres, f"SELECT COUNT(*) FROM runs WHERE study = '{name}'")
    assert main([*small, "--seeds", "2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "was started with seeds 1, not 2" in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert query(postgres, f"SELECT COUNT(*) FROM runs WHERE study = '{name}'") == before
    assert not (tmp_path / "b").exists()
