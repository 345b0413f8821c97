"""Honest times across interruptions (issue 30): a run killed with SIGKILL and resumed reports
the training time, the wall time and the seconds to a target of all the work it kept — the time
before the kill (kept in the checkpoint) plus the time after the resume — not only the latter.

The kill lands after four fifths of the steps, so a resumed run that counted only its own
process's time would report about a fifth of an uninterrupted run's seconds. The uninterrupted
run trains beside the killed one, at the same time: both see the same load on the machine."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.train import Trainer
from descentlab.train import checkpoint as ckpt
from tests.processes import kill_after_checkpoint

STEPS, EVERY, CHECKPOINT = 3000, 150, 300
KILL_AT = STEPS * 4 // 5  # the kill lands once the checkpoint at this step is written
# linreg with plain SGD at a small lr: validation R² rises at every evaluation to the last one, so a
# target set just under the final value is first reached after the resume point
TRAIN = ["train", "--workload", "linreg", "--optimizer", "sgd", "--lr", "0.001", "--steps", str(STEPS),
         "--checkpoint-every", str(CHECKPOINT), "--eval-every", str(EVERY), "--seed", "0", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# a resumed run's seconds over an uninterrupted run's (counting only the time after the resume: ~0.2)
LOW, HIGH = 0.5, 2.0


@pytest.fixture
def one_thread():
    """The runs in this process with one torch thread, as the killed one (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "descentlab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=ENV)


def _evaluations(out: Path) -> list[dict]:
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return [{"step": int(r["step"]), "seconds": float(r["seconds"]), "val_r2": float(r["val_r2"])}
            for r in rows if r.get("val_r2")]


def _to_target(rows: list[dict], target: float) -> tuple[int, float]:
    from descentlab.compare.runner import time_to_target

    return time_to_target(rows, "val_r2", target, "max")


def _same_size(resumed: float, full: float, what: str) -> None:
    print(f"{what}: uninterrupted {full:.3f} s, resumed {resumed:.3f} s ({resumed / full:.2f}x)")
    assert LOW * full <= resumed <= HIGH * full, (
        f"{what}: the resumed run reports {resumed:.3f} s, the uninterrupted one {full:.3f} s")


def test_train_killed_and_resumed_reports_the_time_before_the_kill_too(tmp_path, one_thread):
    """A real process killed with SIGKILL, an uninterrupted one beside it; the resume runs in this process."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = _cli(*TRAIN, "--out", str(full))
    killed_at = kill_after_checkpoint(_cli(*TRAIN, "--out", str(killed)), killed / "checkpoints", KILL_AT)
    assert KILL_AT <= killed_at < STEPS, killed_at
    before = ckpt.load_latest(killed / "checkpoints")[0]["loop"]  # what the resume starts from
    began = time.perf_counter()
    assert main([*TRAIN, "--out", str(killed), "--resume"]) == 0
    resume_wall = time.perf_counter() - began
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    a, b = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert a["steps"] == b["steps"] == STEPS
    # of the size of an uninterrupted run's
    _same_size(b["train_seconds"], a["train_seconds"], "train_seconds")
    _same_size(b["wall_seconds"], a["wall_seconds"], "wall_seconds")
    # exactly: the time before the kill (the checkpoint's), plus at most this process's own
    assert 0 < before["train_seconds"] <= before["wall_seconds"]
    assert before["train_seconds"] < b["train_seconds"] <= before["train_seconds"] + resume_wall
    assert before["wall_seconds"] < b["wall_seconds"] <= before["wall_seconds"] + resume_wall
    assert b["train_seconds"] <= b["wall_seconds"]

    # seconds to a target first reached after the resume point: the logged times run on from the checkpoint's
    rows_a, rows_b = _evaluations(full), _evaluations(killed)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert all(x["seconds"] <= y["seconds"] for x, y in zip(rows_b, rows_b[1:])), "the logged seconds go back"
    target = rows_a[-1]["val_r2"] - 1e-4
    (steps_a, seconds_a), (steps_b, seconds_b) = _to_target(rows_a, target), _to_target(rows_b, target)
    assert steps_a == steps_b and steps_a > killed_at, (steps_a, killed_at)
    assert before["train_seconds"] < seconds_b <= b["train_seconds"]
    _same_size(seconds_b, seconds_a, "seconds to target")


# compare's and benchmark's runs: compare.runner.train_one with a checkpoint folder, as their workers call it
# (a checkpoint every STEPS / compare.runner.CHECKPOINTS = 300 steps)
ONE_RUN = textwrap.dedent("""
    import json, sys
    from tests.train.test_resume_times import one_run

    print(json.dumps(one_run(sys.argv[1])))
""")


def one_run(folder: str, target: float | None = None) -> tuple[dict, list[dict]]:
    """linreg, SGD at lr 0.001, as a comparison's worker trains one run with checkpoints in ``folder``."""
    from descentlab import workloads
    from descentlab.compare.runner import train_one
    from descentlab.compare.strategy import coerce

    wl = workloads.resolve("linreg", seed=0)
    strategy = coerce([{"optimizer": "sgd", "lr": 0.001}])[0]
    summary, rows = train_one(wl, strategy, 0, steps=STEPS, batch_size=32, eval_every=EVERY, target=target,
                              device="cpu", checkpoint_dir=folder)
    return summary, [r for r in rows if "val_r2" in r]


def _one_run_process(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", ONE_RUN, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=Path(__file__).parents[2])


def test_a_comparison_s_run_killed_and_resumed_reports_the_time_before_the_kill_too(tmp_path, one_thread):
    """What summary.csv (wall_seconds, seconds_to_target), the run store and the benchmark's times.csv get."""
    ref = _one_run_process(tmp_path / "full")
    folder = tmp_path / "killed"
    killed_at = kill_after_checkpoint(_one_run_process(folder), folder, KILL_AT)
    assert KILL_AT <= killed_at < STEPS, killed_at
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    full, rows = json.loads(out.strip().splitlines()[-1])
    target = rows[-1]["val_r2"] - 1e-4  # first reached near the end: R² rises at every evaluation
    steps_full, seconds_full = _to_target(rows, target)
    assert steps_full > killed_at, (steps_full, killed_at)

    before = ckpt.load_latest(folder)[0]["loop"]
    began = time.perf_counter()
    again, _ = one_run(str(folder), target)
    resume_wall = time.perf_counter() - began

    assert again["steps"] == full["steps"] == STEPS and again["steps_to_target"] == steps_full
    _same_size(again["train_seconds"], full["train_seconds"], "train_seconds")
    _same_size(again["seconds_to_target"], seconds_full, "seconds_to_target")
    _same_size(again["wall_seconds"], full["wall_seconds"], "wall_seconds")
    assert before["train_seconds"] < again["train_seconds"] <= before["train_seconds"] + resume_wall
    assert before["wall_seconds"] < again["wall_seconds"] <= before["wall_seconds"] + resume_wall
    assert before["train_seconds"] < again["seconds_to_target"] <= again["train_seconds"]


def _tiny(tmp_path: Path, **kw) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.MSELoss(), batch_size=8,
                   device="cpu", checkpoint_dir=str(tmp_path), checkpoint_every=10, **kw)


def test_the_checkpoint_keeps_the_wall_time_and_an_old_one_without_it_still_resumes(tmp_path):
    data = (torch.randn(64, 4), torch.randn(64, 1))
    first = _tiny(tmp_path)
    first.fit(data, max_steps=20)
    assert first.wall_seconds >= first.train_seconds > 0
    stopped = first.wall_seconds
    time.sleep(0.01)
    assert first.wall_seconds == stopped  # the clock runs in fit() only
    state = torch.load(tmp_path / "step-00000020.pt", weights_only=True)
    saved = state["loop"]["wall_seconds"]
    assert state["loop"]["train_seconds"] <= saved <= first.wall_seconds

    second = _tiny(tmp_path, resume=True)
    second.fit(data, max_steps=30)
    assert second.step == 30 and second.wall_seconds > saved and second.train_seconds > state["loop"]["train_seconds"]

    # a checkpoint written before the wall time was kept: its training time stands in for it (a lower bound)
    del state["loop"]["wall_seconds"]
    for _, path in ckpt.step_checkpoints(tmp_path):
        path.unlink()
    ckpt.atomic_save(state, tmp_path / "step-00000020.pt")
    old = _tiny(tmp_path, resume=True)
    old.load_state_dict(ckpt.load_latest(tmp_path)[0])
    assert old.step == 20 and old.wall_seconds == state["loop"]["train_seconds"]
    old.fit(data, max_steps=30)
    assert old.step == 30 and old.wall_seconds > state["loop"]["train_seconds"]
