"""`descentlab train`: outputs, configuration files, bad input, and a real SIGKILL + --resume."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.train import checkpoint as ckpt
from tests.processes import cli, kill_after_checkpoint


def test_train_writes_summary_metrics_checkpoints_and_store(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--workload", "linreg", "--steps", "60", "--out", str(out), "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("workload", "optimizer", "schedule", "seed", "steps", "wall_seconds", "final", "best"):
        assert key in summary
    assert summary["steps"] == 60 and summary["workload"] == "linreg"
    assert "test_r2" in summary["final"] and "test_r2" in summary["best"]
    assert json.loads((out / "summary.json").read_text()) == summary
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {"step", "train_loss", "lr", "val_r2"} <= set(rows[0]) | set(rows[-1])
    assert ckpt.load_latest(out / "checkpoints")[0]["loop"]["step"] == 60
    assert (out / "checkpoints" / "best.pt").exists()
    import sqlite3

    db = sqlite3.connect(out / "runs.sqlite")
    (status, config) = db.execute("SELECT status, config FROM runs").fetchone()
    assert status == "finished" and json.loads(config)["workload"] == "linreg"
    assert db.execute("SELECT COUNT(*) FROM metrics WHERE key = 'train_loss'").fetchone()[0] == 60


def test_config_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("workload: linreg\noptimizer: adam\nlr: 0.01\nsteps: 30\nbatch-size: 16\nopt:\n  betas: [0.8, 0.9]\n")
    out = tmp_path / "out"
    assert main(["train", "--config", str(cfg), "--steps", "20", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["optimizer"] == "adam" and summary["batch_size"] == 16
    assert summary["hparams"]["betas"] == [0.8, 0.9] and summary["hparams"]["lr"] == 0.01


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--workload", "linreeg"], "did you mean 'linreg'"),
        (["--workload", "linreg", "--optimizer", "adamm"], "did you mean 'adam'"),
        (["--workload", "linreg", "--schedule", "cosin"], "did you mean 'cosine'"),
        (["--workload", "linreg", "--epochs", "-2"], "invalid epochs=-2"),
        (["--workload", "linreg", "--batch-size", "0"], "invalid batch_size=0"),
        (["--workload", "linreg", "--lr", "-1"], "invalid lr=-1"),
        (["--workload", "linreg", "--optimizer", "adam", "--opt", "betas=(1.5,0.9)"], "invalid betas"),
        (["--workload", "linreg", "--opt", "betas=(0.9,0.9)"], "sgd got unknown hyperparameter(s) ['betas']"),
        (["--workload", "linreg", "--sched", "nonsense"], "expected KEY=VALUE"),
        (["--workload", "mnist-cnn"], "mnist-cnn"),
        (["--workload", "mnist-cnn", "--data-dir", "no/such/dir"], "no such directory"),
        (["--workload", "linreg", "--config", "missing.yaml"], "cannot read config file"),
        (["--workload", "linreg", "--config", "bad.yaml"], "malformed YAML"),
        (["--workload", "linreg", "--config", "unknown.yaml"], "unknown key 'learning_rate'"),
        (["--workload", "linreg", "--resume"], "--resume needs --out"),
        ([], "no workload given"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("workload: linreg\n  lr: [0.1\n")
    (tmp_path / "unknown.yaml").write_text("workload: linreg\nlearning_rate: 0.1\n")
    out = tmp_path / "out"
    extra = [] if "--resume" in argv else ["--out", str(out)]
    assert main(["train", *argv, *extra, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists(), "bad input must not create the output folder"


def test_divergence_exits_1_with_a_message_and_keeps_a_finite_best(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--workload", "linreg", "--lr", "1e6", "--steps", "50", "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "step" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"


_cli = cli


def _model(out: Path):
    state, _ = ckpt.load_latest(out / "checkpoints")
    return state


def _rows(out: Path):
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# adamw; and the preconditioned optimizers of issue 33 killed between two preconditioner
# updates: soap refreshes its eigenbasis every 29 steps (no checkpoint of the run, every 20
# steps, falls on a multiple of 29); kron updates its factors at random steps, drawn from a
# generator whose state is in the checkpoint.
SIGKILLED = {
    "adamw": ["--optimizer", "adamw", "--steps", "4000", "--checkpoint-every", "100", "--early-stopping", "1000"],
    "soap": ["--optimizer", "soap", "--opt", "precondition_frequency=29", "--steps", "400", "--checkpoint-every",
             "20"],
    "kron": ["--optimizer", "kron", "--opt", "pre_conditioner_update_probability=0.3", "--steps", "400",
             "--checkpoint-every", "20"],
}


@pytest.mark.parametrize("name", list(SIGKILLED))
def test_sigkill_mid_epoch_then_resume_is_bitwise_exact(tmp_path, name):
    """A real process is killed with SIGKILL mid-run; --resume finishes it with
    exactly the parameters, optimizer state and metrics of an uninterrupted run."""
    args = ["train", "--workload", "linreg", *SIGKILLED[name], "--schedule", "cosine", "--quiet"]
    steps = int(args[args.index("--steps") + 1])
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = _cli(*args, "--out", str(full))

    killed_at = kill_after_checkpoint(_cli(*args, "--out", str(killed)), killed / "checkpoints", steps // 7)
    assert killed_at < steps and killed_at % 23 != 0, "the kill should land mid-run and mid-epoch"
    assert name != "soap" or killed_at % 29 != 0, "the kill should land between two eigenbasis refreshes"

    resumed = subprocess.run([sys.executable, "-m", "descentlab", *args, "--out", str(killed), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    ref.wait(timeout=300)
    assert ref.returncode == 0

    a, b = _model(full), _model(killed)
    assert a["loop"]["step"] == b["loop"]["step"] == steps
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for key in pa:
            assert torch.equal(torch.as_tensor(pa[key]), torch.as_tensor(pb[key])), key
    assert _rows(full) == _rows(killed)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert sa["final"] == sb["final"] and sa["best"] == sb["best"]


def test_resuming_a_finished_run_takes_no_extra_step(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--workload", "linreg", "--steps", "40", "--out", str(out), "--quiet"]) == 0
    first = json.loads((out / "summary.json").read_text())
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["steps"] == first["steps"] == 40
    assert again["final"] == first["final"]


def test_a_shorter_budget_keeps_the_recipe_schedule_shape():
    from descentlab.experiment.config import TrainConfig
    from descentlab.experiment.run import resolve

    plan = resolve(TrainConfig(workload="mnist1d-cnn", steps=1000))
    assert plan["schedule"] == "wsd"
    assert plan["schedule_kwargs"]["stable_steps"] == 900 and plan["schedule_kwargs"]["decay_steps"] == 100
    plan = resolve(TrainConfig(workload="mnist1d-cnn", steps=1000, sched={"decay_steps": 50}))
    assert plan["schedule_kwargs"]["decay_steps"] == 50
