"""`compare` on the execution engine: --jobs N gives the numbers of --jobs 1; a comparison
SIGKILLed half-way (or one of its two workers) and run again gives the metric columns of an
uninterrupted one; `descentlab worker` joins a tune study; bad storage input is exit 2."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.compare.execute import _folder as run_folder

# 4 runs of ~1 s each on one core: long enough to be killed in the middle of one (a run checkpoints
# every STEPS/10 steps; the kill lands in the half a run spends between its first checkpoint and
# the one past its middle, ~0.5 s here). At 1000 steps, as at 3000, momentum's two seeds end on
# different accuracies (at 1200 or 1500 on the same: the test of seeds would not hold)
STEPS = 1000
ARGS = ["compare", "--workload", "digits-mlp", "--optimizers", "momentum,adam", "--seeds", "2", "--steps", str(STEPS),
        "--eval-every", "150", "--target", "0.95", "--quiet"]
METRICS = ("strategy", "seed", "final_metric", "best_metric", "steps_to_target", "test_final_metric", "status")


def metric_columns(folder: Path) -> list[dict[str, str]]:
    """summary.csv's metric columns, and each run's train and validation loss at its last step from the
    run store: accuracies on a small validation set often come out equal for runs that are not (a
    resume that loses the optimizer's state ends on the same accuracies at 1000 steps), losses do not."""
    with open(folder / "summary.csv") as f:
        rows = [{k: row[k] for k in METRICS} for row in csv.DictReader(f)]
    with sqlite3.connect(folder / "runs.sqlite") as con:
        last = con.execute("SELECT r.name, m.key, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
                           "WHERE r.group_name = 'compare' AND m.key IN ('train_loss', 'val_loss') "
                           "AND m.step = (SELECT MAX(step) FROM metrics WHERE run_id = m.run_id)").fetchall()
    losses: dict[str, dict[str, float]] = {}
    for name, key, value in last:
        losses.setdefault(name, {})[key] = value
    for row in rows:
        row.update(losses[f"{row['strategy']}/seed{row['seed']}"])
    return rows


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "descentlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def trials(db: Path) -> list[tuple[str, dict | None]]:
    """(state, owner) of every trial, read with sqlite3 (an Optuna storage would create tables)."""
    return [(state, owner) for state, owner, _ in _trials(db)]


def _trials(db: Path) -> list[tuple[str, dict | None, dict | None]]:
    """(state, owner, run key) of every trial."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as con:
            rows = con.execute("SELECT t.state, a.value_json, u.value_json FROM trials t "
                               "LEFT JOIN trial_system_attributes a ON a.trial_id = t.trial_id "
                               "AND a.key = 'descentlab:owner' LEFT JOIN trial_user_attributes u "
                               "ON u.trial_id = t.trial_id AND u.key = 'descentlab:run'").fetchall()
    except sqlite3.OperationalError:  # the tables are not made yet
        return []
    return [(state, json.loads(owner) if owner else None, json.loads(run) if run else None)
            for state, owner, run in rows]


def wait_for_half_and_a_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 240,
                                   steps: int = STEPS) -> list[dict]:
    """Once half the runs are done and a running one has checkpointed only in its first half
    (half its ``steps`` or more still to go): that run's owner, first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        states = _trials(out / "runs.sqlite")
        if sum(s == "COMPLETE" for s, _, _ in states) >= 2:
            for state, owner, run in states:
                if state != "RUNNING" or not owner or not run:
                    continue
                done = [int(c.stem.split("-")[1])
                        for c in out.glob(f"runs/{run_folder(run)}/checkpoints/step-*.pt")]
                if done and max(done) <= steps // 2:  # this very run is in its first half
                    return [owner]
        time.sleep(0.02)
    raise AssertionError("the comparison did not get half-way")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict[str, str]]:
    """The uninterrupted comparison, in this process's worker (--jobs 1)."""
    out = tmp_path_factory.mktemp("reference")
    assert main([*ARGS, "--jobs", "1", "--out", str(out)]) == 0
    return metric_columns(out)


def test_jobs_2_gives_the_metric_columns_of_jobs_1(reference, tmp_path):
    assert main([*ARGS, "--jobs", "2", "--out", str(tmp_path)]) == 0
    assert metric_columns(tmp_path) == reference
    assert len(reference) == 4 and reference[0]["final_metric"] != reference[2]["final_metric"]
    assert not list(tmp_path.glob("runs/*")), "a finished run's checkpoints are removed"


def test_sigkill_half_way_then_the_same_command_gives_the_same_metric_columns(reference, tmp_path):
    argv = [*ARGS, "--jobs", "2", "--out", str(tmp_path)]
    proc = cli(*argv)
    wait_for_half_and_a_checkpoint(proc, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the workers see their parent's death and end themselves
    again = subprocess.run([sys.executable, "-m", "descentlab", *argv[:-2], "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "runs already done" in again.stderr and "continuing from its checkpoint" in again.stderr, again.stderr
    assert metric_columns(tmp_path) == reference
    assert sum(s == "COMPLETE" for s, _ in trials(tmp_path / "runs.sqlite")) == 4


def test_a_killed_worker_s_run_is_finished_by_the_other(reference, tmp_path):
    proc = cli(*ARGS, "--jobs", "2", "--out", str(tmp_path))
    victim = wait_for_half_and_a_checkpoint(proc, tmp_path)[0]
    assert victim["pid"] != proc.pid
    os.kill(victim["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "died (signal 9)" in stderr and "continuing from its checkpoint" in stderr, stderr
    assert metric_columns(tmp_path) == reference
    states = [s for s, _ in trials(tmp_path / "runs.sqlite")]
    assert states.count("COMPLETE") == 4 and states.count("FAIL") == 1  # the dead attempt, run again
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:  # each run recorded once
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT name) FROM runs WHERE group_name = 'compare'").fetchone() == (4, 4)


def test_a_worker_joins_a_tune_study_and_the_study_ends_with_exactly_n(tmp_path):
    out = tmp_path / "tune"
    url = f"sqlite:///{out / 'study.sqlite'}"
    # trials long enough that the worker, whose imports take ~2.5 s of CPU, is in time to run some: the
    # tune command's first trial pays its own one-time imports (~2 s), then 5 more of ~1.2 s each
    tune = cli("tune", "--workload", "linreg", "--steps", "1500", "--trials", "6", "--jobs", "1", "--out", str(out))
    deadline = time.time() + 120
    while not trials(out / "study.sqlite"):
        assert tune.poll() is None and time.time() < deadline, tune.stderr.read() if tune.poll() is not None else ""
        time.sleep(0.05)
    worker = subprocess.run([sys.executable, "-m", "descentlab", "worker", "--storage", url, "--jobs", "1",
                             "--out", str(tmp_path / "elsewhere")], capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    assert tune.wait(timeout=300) == 0, tune.stderr.read()
    states = trials(out / "study.sqlite")
    assert [s for s, _ in states].count("COMPLETE") == 6 and len(states) == 6
    pids = {o["pid"] for _, o in states}
    assert len(pids) == 2, "both the tune command and the worker ran trials"


@pytest.mark.parametrize("argv,message", [
    (["--jobs", "0"], "invalid jobs=0"),
    (["--storage", "runs.db"], "invalid storage URL 'runs.db'"),
    (["--storage", "nosuch://x"], "cannot open storage URL 'nosuch://x'"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open storage URL 'postgresql://u:***@127.0.0.1:1/db'"),
])
def test_bad_storage_input_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main([*ARGS[:3], "--optimizers", "adam", "--steps", "10", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert "secret" not in err
    assert os.listdir(tmp_path) == [], "nothing may be written"


def test_joining_a_missing_study_or_reusing_a_name_with_other_settings_is_exit_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    assert main(["worker", "--storage", url]) == 2
    assert "holds no descentlab comparison or tune study" in capsys.readouterr().err
    small = ["compare", "--workload", "digits-mlp", "--optimizers", "adam", "--steps", "30", "--quiet", "--jobs", "1",
             "--storage", url]
    assert main([*small, "--out", str(tmp_path / "a")]) == 0
    before = (tmp_path / "shared.sqlite").read_bytes()
    threads = torch.get_num_threads()
    try:  # --jobs 1 runs here: at --threads (default 1), as each worker process, not torch's default
        torch.set_num_threads(2)
        assert main(["worker", "--storage", url, "--jobs", "1", "--out", str(tmp_path / "w")]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert main(["worker", "--storage", url, "--study", "nosuch"]) == 2
    assert "no comparison or tune study 'nosuch'" in capsys.readouterr().err
    assert main([*small[:-4], "--steps", "40", "--jobs", "1", "--storage", url, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "was started with steps 30, not 40" in err and err.count("\n") == 1, err
    assert (tmp_path / "shared.sqlite").read_bytes() == before, "nothing in the storage changed"
    assert not (tmp_path / "b").exists()
    # the comparison renders from its URL alone
    assert main(["report", url, "--out", str(tmp_path / "r")]) == 0
    assert "adam" in (tmp_path / "r" / "report.html").read_text()
