"""`descentlab tune`: outputs, exactly N trials after a rerun, SIGKILL (also with --jobs 2),
heartbeats of trials run elsewhere, pruning and divergence, bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from descentlab.cli import main
from descentlab.tune import study as tune_study
from descentlab.tune.study import tune
from tests.processes import cli

STUDY = "descentlab-tune-linreg"
FAST = ["--workload", "linreg", "--steps", "30", "--jobs", "1"]


def trials_of(out: Path) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.sqlite'}").get_trials()


def finished(trials) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


@pytest.fixture(scope="module")
def study4(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "study"
    assert main(["tune", *FAST, "--trials", "4", "--out", str(out)]) == 0
    return out


def test_outputs(study4):
    result = json.loads((study4 / "tune.json").read_text())
    assert result["n_trials"] == 4 and len(result["trials"]) == 4
    assert result["n_complete"] + result["n_pruned"] == 4 and result["n_failed"] == 0
    assert result["direction"] == "maximize" and result["metric"] == "val_r2"
    best = max((r for r in result["trials"] if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    assert result["best_trial"] == best["number"] and result["best_value"] == best["value"]
    assert result["best_params"] == best["params"] and "optimizer" in result["best_params"]
    for row in result["trials"]:
        assert (study4 / "trials" / f"{row['number']:04d}" / "summary.json").exists()
        assert (study4 / "trials" / f"{row['number']:04d}" / "metrics.csv").exists()
    html = (study4 / "report.html").read_text()
    for section in ('id="history"', 'id="importances"', 'id="curves"', 'id="trials-table"'):
        assert section in html
    assert html.count("data:image/png;base64,") >= 3  # history, reported values, best trial's curves
    assert "src=\"http" not in html and "<script" not in html


def test_best_yaml_trains_the_best_trial_again(study4, tmp_path):
    result = json.loads((study4 / "tune.json").read_text())
    config = yaml.safe_load((study4 / "best.yaml").read_text())
    assert config == result["best_config"] and config["steps"] == 30
    run = subprocess.run([sys.executable, "-m", "descentlab", "train", "--config", str(study4 / "best.yaml"),
                          "--out", str(tmp_path / "again"), "--json", "--quiet"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["final"]["val_r2"] == pytest.approx(result["best_value"], rel=1e-6)


def test_rerun_after_completion_adds_no_trial(study4, capsys):
    before = (study4 / "tune.json").read_text()
    assert main(["tune", *FAST, "--trials", "4", "--out", str(study4)]) == 0
    assert "4 of 4 trials finished" in capsys.readouterr().out
    trials = trials_of(study4)
    assert len(trials) == 4 and finished(trials) == 4
    assert json.loads((study4 / "tune.json").read_text())["trials"] == json.loads(before)["trials"]


def test_rerun_with_other_settings_is_refused(study4, capsys):
    before = (study4 / "tune.json").read_text()
    assert main(["tune", "--workload", "linreg", "--steps", "40", "--trials", "4", "--out", str(study4)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descentlab: error: ") and "steps=30" in err and len(err.strip().splitlines()) == 1
    assert (study4 / "tune.json").read_text() == before and len(trials_of(study4)) == 4


def _descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _states(out: Path) -> list[str]:
    """The trials' states, read without opening an Optuna storage (which would create tables)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{out / 'study.sqlite'}?mode=ro", uri=True, timeout=5)) as db:
            return [row[0] for row in db.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.Error:
        return []


def _kill_with_a_trial_running(proc: subprocess.Popen, out: Path, timeout: float = 240) -> list[int]:
    """SIGKILL ``proc`` once one trial finished and another runs; returns the pids of its descendants."""
    deadline = time.time() + timeout
    children: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        states = _states(out) if (out / "study.sqlite").exists() else []
        if ("COMPLETE" in states or "PRUNED" in states) and "RUNNING" in states:
            # the process tree first (slow under load), then the states again: the kill lands right
            # after a trial was seen running (a trial seen before the scan could finish during it)
            children = _descendants(proc.pid)
            if "RUNNING" in _states(out):
                break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return children


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigkill_then_the_same_command_finishes_exactly_n(jobs, tmp_path):
    out = tmp_path / "study"
    # 150 steps: long enough that the trial seen running is still running when the SIGKILL lands
    # (with 40, a trial of ~50 ms could finish in between and leave none running: seen once)
    args = ["tune", "--workload", "linreg", "--steps", "150", "--trials", "6", "--jobs", jobs,
            "--out", str(out)]
    env = {**os.environ, "DESCENTLAB_TUNE_HEARTBEAT": "1"}
    children = _kill_with_a_trial_running(cli(*args, env=env), out)
    if jobs == "2":
        owners = {t.system_attrs[tune_study.OWNER]["pid"] for t in trials_of(out) if tune_study.OWNER in t.system_attrs}
        assert owners and owners <= set(children)  # the workers that ran trials (and the fork server)
        deadline = time.time() + 10
        while time.time() < deadline and not all(_dead(pid) for pid in children):
            time.sleep(0.05)
        assert all(_dead(pid) for pid in children), "worker processes outlived the killed tune"
    killed = [t.number for t in trials_of(out) if t.state.name == "RUNNING"]
    assert killed and finished(trials_of(out)) < 6

    rerun = subprocess.run([sys.executable, "-m", "descentlab", *args], env=env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    trials = trials_of(out)
    assert finished(trials) == 6
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    by_number = {t.number: t for t in trials}
    retried = {t.system_attrs.get("failed_trial") for t in trials if t.state.name in ("COMPLETE", "PRUNED")}
    for number in killed:
        assert by_number[number].state.name == "FAIL" and number in retried
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == number)
        # the same strategy, run again (all of it, unless it was killed while its parameters were drawn)
        assert retry.params.items() >= by_number[number].params.items()
    result = json.loads((out / "tune.json").read_text())
    assert result["n_trials"] == 6 and result["n_failed"] == len(killed)


def test_a_trial_of_a_process_elsewhere_is_waited_for_then_retried_once_its_heartbeat_is_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_TUNE_HEARTBEAT", "1")
    out = tmp_path / "study"
    assert tune("linreg", steps=20, trials=1, out=out, log=lambda line: None)["n_trials"] == 1
    storage = tune_study.open_storage(f"sqlite:///{out / 'study.sqlite'}", 1)
    with tune_study.quiet_optuna():
        study = optuna.load_study(study_name=STUDY, storage=storage)
        foreign = study.ask()  # as a worker on another machine would, which then stops beating
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(STUDY),
                                                                   foreign.number)
        storage.record_heartbeat(trial_id)
        storage.set_trial_system_attr(trial_id, tune_study.OWNER, {"host": "elsewhere.invalid", "pid": 1})
    start = time.time()
    result = tune("linreg", steps=20, trials=2, out=out, log=lambda line: None)
    assert time.time() - start >= tune_study.GRACE_FACTOR * 1 - 0.5  # it waited for the grace period
    trials = trials_of(out)
    assert result["n_trials"] == 2 and finished(trials) == 2 and len(trials) == 3
    assert trials[foreign.number].state.name == "FAIL"
    assert any(t.system_attrs.get("failed_trial") == foreign.number for t in trials if t.state.name == "COMPLETE")


def test_pruner_stops_poor_trials_and_divergence_is_pruned_not_a_value(tmp_path):
    # lrs from 1/1000 to 1000 times the default: many hopeless, some diverge
    space = {"optimizer": ["momentum", "adam"], "lr": {"factor": 1000}, "schedule": ["constant"], "batch_size": [32]}
    result = tune("linreg", steps=40, trials=10, out=tmp_path / "s", space=space, pruner="hyperband",
                  log=lambda line: None)
    rows = result["trials"]
    assert result["n_trials"] == 10
    best = next(r for r in rows if r["number"] == result["best_trial"])
    assert best["state"] == "COMPLETE" and best["steps"] == 40
    diverged = [r for r in rows if r["diverged"]]
    assert diverged and all(r["state"] == "PRUNED" for r in diverged)
    assert all(r["config"]["lr"] > 10 * best["config"]["lr"] for r in diverged)
    stopped = [r for r in rows if r["state"] == "PRUNED" and not r["diverged"]]
    assert stopped and all(r["steps"] < 40 for r in stopped)
    for r in stopped:  # stopped at an evaluation where an earlier trial had done better
        step, value = max(((int(k), v) for k, v in r["intermediate"].items()), key=lambda kv: kv[0])
        assert value == r["value"]
        assert any(o["number"] < r["number"] and o["intermediate"].get(str(step), -1e300) > value for o in rows)
    summary = json.loads((tmp_path / "s" / "trials" / f"{stopped[0]['number']:04d}" / "summary.json").read_text())
    assert summary["stop_reason"] == "pruned" and summary["steps"] == stopped[0]["steps"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--trials", "0"], "invalid trials=0"),
        (["--trials", "-3"], "invalid trials=-3"),
        (["--jobs", "0"], "invalid jobs=0"),
        (["--storage", "nosuch://x"], "cannot open storage URL 'nosuch://x'"),
        (["--storage", "postgresql://u:secret@127.0.0.1:1/db"],
         "cannot open storage URL 'postgresql://u:***@127.0.0.1:1/db'"),
        (["--storage", "study.db"], "invalid storage URL 'study.db'"),
        (["--space", "unknown.yaml"], "unknown key 'learning_rate'"),
        (["--space", "lr.yaml"], "low=0.1 >= high=0.01"),
        (["--space", "optimizer.yaml"], "invalid optimizer 'adamm'"),
        (["--space", "fixed.yaml"], "invalid fixed key 'steps'"),
        (["--space", "missing.yaml"], "cannot read search space file"),
        (["--space", "bad.yaml"], "malformed YAML"),
        (["--steps", "10", "--epochs", "2"], "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(extra, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unknown.yaml").write_text("learning_rate: {low: 0.1, high: 1.0}\n")
    (tmp_path / "lr.yaml").write_text("lr: {low: 0.1, high: 0.01}\n")
    (tmp_path / "optimizer.yaml").write_text("optimizer: [adam, adamm]\n")
    (tmp_path / "fixed.yaml").write_text("fixed: {steps: 3}\n")
    (tmp_path / "bad.yaml").write_text("lr: [0.1\n")
    out = tmp_path / "out"
    assert main(["tune", "--workload", "linreg", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descentlab: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "secret" not in err
    assert not out.exists()


def test_unknown_workload_is_exit_2(tmp_path, capsys):
    assert main(["tune", "--workload", "linreeg", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descentlab: error: ") and "linreeg" in err and not (tmp_path / "out").exists()
