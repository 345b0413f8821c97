"""Any optimizer in every command (issue 23): torch's AdamW by reference equals descentlab's
adamw in `compare`; a user's file optimizer and schedule train, resume exactly after SIGKILL,
compare with --jobs 2 and resume, run on a storage with a `descentlab worker`, tune, lr-find,
prune --structured and distill; pytorch-optimizer's ADOPT goes through compare --tune-lr,
tune --trials 3 and lr-find; every bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from descentlab.cli import main
from descentlab.train import checkpoint as ckpt
from tests.compare.test_parallel import trials, wait_for_half_and_a_checkpoint
from tests.processes import cli, kill_after_checkpoint, meanwhile

USER = Path(__file__).parents[1] / "optim" / "user_optimizers.py"
HEAVY = f"{USER}:HeavyBall"
WARM = f"{USER}:warm_linear"
ADOPT = "pytorch_optimizer:ADOPT"
# The processes that are SIGKILLed and those that continue after them beat every 2 s (5 s by
# default): a run that a killed worker had claimed but not yet marked as its own is failed and
# run again after 3 heartbeats (engine.liveness.dead), 6 s instead of 15 s. The kills land as
# the workers claim their next runs, and in 2 of 7 tries here the rerun sat ~10 s waiting for
# such a run. The same code path either way, only a shorter grace period.
HEARTBEAT = {**os.environ, "DESCENTLAB_TUNE_HEARTBEAT": "2"}


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_torchs_adamw_by_reference_gives_descentlabs_adamw_columns_in_compare(tmp_path):
    strategies = tmp_path / "s.yaml"
    same = {"lr": 3e-3, "weight_decay": 0.05, "schedule": "cosine"}
    strategies.write_text(yaml.safe_dump({"strategies": [{"name": "torch-adamw", "optimizer": "torch.optim:AdamW",
                                                          **same},
                                                         {"name": "adamw", "optimizer": "adamw", **same}]}))
    out = tmp_path / "cmp"
    assert main(["compare", "--workload", "diabetes", "--strategies", str(strategies), "--steps", "300", "--seeds", "2",
                 "--jobs", "1", "--quiet", "--out", str(out)]) == 0
    got = rows(out)
    theirs = [r for r in got if r["strategy"] == "torch-adamw"]
    ours = [r for r in got if r["strategy"] == "adamw"]
    assert len(theirs) == len(ours) == 2
    for a, b in zip(theirs, ours):
        assert a["seed"] == b["seed"] and a["lr_source"] == b["lr_source"] == "given"
        for key in ("final_metric", "best_metric", "test_final_metric"):
            x, y = float(a[key]), float(b[key])
            assert math.isfinite(x) and abs(x - y) <= 1e-4 * max(abs(x), abs(y)), (key, x, y)  # float rounding
    assert float(theirs[0]["final_metric"]) != float(theirs[1]["final_metric"])  # the seeds differ
    # the provenance of each run: torch's class and version, in runs.sqlite and the report
    with sqlite3.connect(out / "runs.sqlite") as con:
        configs = [json.loads(c) for (c,) in con.execute("SELECT config FROM runs")]
    source = next(c["optimizer_source"] for c in configs if c["strategy"] == "torch-adamw")
    assert source["package"] == "torch" and source["version"] == torch.__version__
    assert source["qualname"] == "torch.optim.adamw.AdamW"
    html = (out / "report.html").read_text()
    assert "torch.optim.adamw.AdamW" in html and torch.__version__ in html


# -- a user's file in every command -----------------------------------------------------------


def _model(out: Path) -> dict:
    state, _ = ckpt.load_latest(out / "checkpoints")
    return state


def test_a_users_optimizer_and_schedule_resume_exactly_after_sigkill(tmp_path):
    args = ["train", "--workload", "linreg", "--optimizer", HEAVY, "--opt", "momentum=0.8", "--lr", "0.01",
            "--schedule", WARM, "--sched", "warm=200", "--steps", "2000", "--checkpoint-every", "100", "--quiet"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    killed_at = kill_after_checkpoint(cli(*args, "--out", str(killed)), killed / "checkpoints", 300)
    assert killed_at < 2000
    with meanwhile(*args, "--out", str(killed), "--resume"):  # the uninterrupted run here meanwhile
        assert main([*args, "--out", str(full)]) == 0
    a, b = _model(full), _model(killed)
    assert a["loop"]["step"] == b["loop"]["step"] == 2000
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["velocity"], sb["velocity"])  # the user's own state, through its state_dict
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["optimizer"] == HEAVY and summary["hparams"] == {"lr": 0.01, "momentum": 0.8}
    assert summary["optimizer_source"]["file"] == str(USER)
    assert len(summary["optimizer_source"]["sha256"]) == 64
    assert summary["schedule"] == WARM and summary["schedule_kwargs"] == {"warm": 200, "total_steps": 2000}


# 4 runs of ~1.2 s each: long enough to be killed in the middle of one (a run checkpoints every
# 150 steps; the kill lands between its first checkpoint and the one past its middle, 750 steps)
STEPS = 1500
COMPARE = ["compare", "--workload", "digits-mlp", "--optimizers", f"{HEAVY},{ADOPT}", "--seeds", "2",
           "--steps", str(STEPS), "--eval-every", "100", "--target", "0.9", "--quiet"]
METRICS = ("strategy", "seed", "final_metric", "best_metric", "steps_to_target", "test_final_metric", "status", "lr",
           "lr_source")


def metric_columns(folder: Path) -> list[dict[str, str]]:
    return [{k: r[k] for k in METRICS} for r in rows(folder)]


@pytest.fixture(scope="module")
def one_job(tmp_path_factory) -> list[dict[str, str]]:
    out = tmp_path_factory.mktemp("one-job")
    assert main([*COMPARE, "--jobs", "1", "--out", str(out)]) == 0
    return metric_columns(out)


def test_compare_jobs_2_and_a_sigkilled_comparison_run_again_give_the_columns_of_jobs_1(one_job, tmp_path):

    assert [r["lr_source"] for r in one_job] == ["the class default, untuned"] * 4
    assert {r["strategy"] for r in one_job} == {"user_optimizers.py:HeavyBall", ADOPT}
    argv = [*COMPARE, "--jobs", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "descentlab", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=HEARTBEAT)
    wait_for_half_and_a_checkpoint(proc, tmp_path, steps=STEPS)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the workers see their parent's death and end themselves
    again = subprocess.run([sys.executable, "-m", "descentlab", *argv], capture_output=True, text=True, timeout=300,
                           env=HEARTBEAT)
    assert again.returncode == 0, again.stderr
    assert "continuing from its checkpoint" in again.stderr, again.stderr
    assert metric_columns(tmp_path) == one_job


def test_a_worker_on_the_storage_imports_the_users_file_and_runs_the_comparison(one_job, tmp_path):
    """The comparison is queued on the storage and its process killed; a `descentlab worker`
    started from another folder runs what is left (it imports the user's file by its absolute
    path), and the same compare command then finds every run done."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    argv = [*COMPARE, "--jobs", "1", "--storage", url, "--name", "mine", "--out", str(tmp_path / "cmp")]
    coordinator = subprocess.Popen([sys.executable, "-m", "descentlab", *argv], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=HEARTBEAT)
    deadline = time.time() + 120
    while len(trials(tmp_path / "shared.sqlite")) < 4:  # every run queued
        assert coordinator.poll() is None and time.time() < deadline, coordinator.stderr.read()
        time.sleep(0.02)
    os.kill(coordinator.pid, signal.SIGKILL)
    coordinator.wait()
    elsewhere = tmp_path / "elsewhere"  # another working folder: the reference is absolute
    elsewhere.mkdir()
    worker = subprocess.Popen([sys.executable, "-m", "descentlab", "worker", "--storage", url, "--study", "mine",
                               "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=elsewhere, env=HEARTBEAT)
    _, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr
    states = trials(tmp_path / "shared.sqlite")
    assert [s for s, _ in states].count("COMPLETE") == 4, states
    assert worker.pid in {owner["pid"] for _, owner in states if owner}, "the worker ran runs"
    assert main(argv) == 0  # the same command, here: every run done, the report written
    assert metric_columns(tmp_path / "cmp") == one_job


def test_tune_lr_find_prune_and_distill_take_a_users_optimizer(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"optimizer": [HEAVY, ADOPT], "schedule": ["constant", WARM]}))
    tune = tmp_path / "tune"
    assert main(["tune", "--workload", "linreg", "--trials", "3", "--steps", "200", "--space", str(space), "--jobs", "1",
                 "--out", str(tune), "--quiet"]) == 0
    result = json.loads((tune / "tune.json").read_text())
    assert result["n_trials"] == 3 and result["best_params"]["optimizer"] in (HEAVY, ADOPT)
    best = yaml.safe_load((tune / "best.yaml").read_text())
    assert best["optimizer"] in (HEAVY, ADOPT)
    # HeavyBall takes no weight_decay: none is sampled for it; ADOPT's own is
    assert ("weight_decay" in result["best_params"]) == (best["optimizer"] == ADOPT)
    assert main(["train", "--config", str(tune / "best.yaml"), "--out", str(tmp_path / "best"), "--quiet"]) == 0

    for optimizer in (HEAVY, ADOPT):
        out = tmp_path / f"lr-find-{optimizer.rsplit(':', 1)[1]}"
        assert main(["lr-find", "--workload", "linreg", "--optimizer", optimizer, "--out", str(out)]) == 0
        found = json.loads((out / "lr_find.json").read_text())
        assert 0 < found["suggested_lr"] and found["lr_source"] == "the class default, untuned"
        assert found["optimizer_source"]["reference"] == optimizer
    assert "before: 0.05 (the class default, untuned)" in capsys.readouterr().out

    prune = tmp_path / "prune"
    assert main(["prune", "--workload", "mnist1d-cnn", "--sparsity", "0.5", "--structured", "--optimizer", HEAVY,
                 "--lr", "0.01", "--steps", "300", "--finetune-steps", "100", "--curve", "none", "--out", str(prune)]) == 0
    pruned = json.loads((prune / "summary.json").read_text())
    assert pruned["optimizer"] == HEAVY and pruned["pruned"]["parameters"] < pruned["dense"]["parameters"]
    assert pruned["pruned"]["test_accuracy"] > 0.3  # the velocity sliced with the channels kept it training

    distill = tmp_path / "distill"  # 100 steps: nothing here depends on how well it learns
    assert main(["distill", "--workload", "mnist1d-cnn", "--optimizer", ADOPT, "--lr", "3e-3", "--steps", "100",
                 "--teacher-steps", "100", "--out", str(distill)]) == 0
    taught = json.loads((distill / "summary.json").read_text())
    assert taught["optimizer"] == ADOPT and taught["optimizer_source"]["package"] == "pytorch_optimizer"


def test_adopt_with_tune_lr_in_compare_is_tuned_and_marked_so(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--workload", "mnist1d-cnn", "--optimizers", f"{ADOPT},adamw", "--steps", "300",
                 "--seeds", "1", "--tune-lr", "--jobs", "1", "--quiet", "--out", str(out)]) == 0
    got = {r["strategy"]: r for r in rows(out)}
    assert got[ADOPT]["lr_source"] == "tuned (lr-find)" and float(got[ADOPT]["lr"]) != 1e-3
    assert float(got[ADOPT]["best_metric"]) > 0.5


# -- bad input: one line, exit 2, nothing written, before any run --------------------------------


@pytest.mark.parametrize("optimizers, message", [
    ("missing.py:Opt", "optimizer file 'missing.py' does not exist"),
    (f"{USER}:Nope", "has no name 'Nope' (it defines:"),
    (f"{USER}:NotAnOptimizer", "is the class NotAnOptimizer, which is not a torch.optim.Optimizer subclass"),
    (f"{USER}:LEARNING_RATE", "is a float, not a torch.optim.Optimizer subclass or a factory"),
    (f"{USER}:NoDefaultLr", "no lr for optimizer user_optimizers.py:NoDefaultLr"),
    ("torch.optim:Adamw", "has no name 'Adamw'; did you mean 'AdamW'"),
    ("no_such_package_xyz:Opt", "optimizer module 'no_such_package_xyz' not found"),
])
def test_a_bad_optimizer_in_compare_is_one_line_exit_2_and_writes_nothing(optimizers, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", "--workload", "linreg", "--optimizers", f"adam,{optimizers}", "--steps", "10",
                 "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", f"{USER}:returns_a_number", "--lr", "0.1"],
     "factory user_optimizers.py:returns_a_number returned int, expected a torch.optim.Optimizer"),
    (["--optimizer", HEAVY, "--opt", "momentum=1.5"],
     "HeavyBall rejected momentum=1.5: ValueError: momentum must be in [0, 1), got 1.5 (it accepts: lr, momentum)"),
    (["--optimizer", HEAVY, "--weight-decay", "0.1"],
     "HeavyBall got unknown hyperparameter(s) ['weight_decay']; it accepts: lr, momentum"),
    (["--schedule", f"{USER}:not_finite"], "returned nan at step 0"),
    (["--schedule", f"{USER}:negative"], "returned -1.0 at step 0"),
])
def test_a_bad_optimizer_or_schedule_in_train_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--workload", "linreg", *argv, "--steps", "10", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
