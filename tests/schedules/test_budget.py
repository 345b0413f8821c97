"""Length-dependent schedule settings default from the budget, on train and compare."""

from __future__ import annotations

import csv

import pytest

from descentlab import schedules
from descentlab.cli import main
from descentlab.experiment.config import TrainConfig
from descentlab.experiment.run import resolve


@pytest.mark.parametrize("name,given,expected", [
    ("cosine", {}, {"total_steps": 1000}),
    ("warmup_cosine", {}, {"warmup_steps": 50, "total_steps": 1000}),
    ("warmup_cosine", {"warmup_steps": 7}, {"warmup_steps": 7, "total_steps": 1000}),
    ("one_cycle", {}, {"total_steps": 1000}),
    ("polynomial", {"total_steps": 400}, {"total_steps": 400}),
    ("wsd", {}, {"decay_steps": 200, "stable_steps": 800}),
    ("wsd", {"warmup_steps": 100}, {"warmup_steps": 100, "decay_steps": 180, "stable_steps": 720}),
    ("step", {}, {"step_size": 333}),
    ("multistep", {}, {"milestones": [500, 750]}),
    ("exponential", {"gamma": 0.9}, {"gamma": 0.9}),
])
def test_budget_defaults(name, given, expected):
    assert schedules.budget_defaults(name, 1000, given) == expected


def test_every_schedule_is_creatable_from_the_budget_alone_where_only_lengths_are_required():
    import torch

    from descentlab import optim

    length_only = [n for n in schedules.available() if n not in ("exponential", "inverse_time", "cyclic")]
    for name in length_only:
        opt = optim.create("sgd", [torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        kw = schedules.budget_defaults(name, 200, {"max_lr": 0.1} if name == "one_cycle" else {})
        schedules.create(name, opt, **kw)  # raises on a missing argument


def test_train_fills_warmup_cosine_from_the_budget():
    plan = resolve(TrainConfig(workload="linreg", schedule="warmup_cosine", steps=400))
    assert plan["schedule_kwargs"] == {"warmup_steps": 20, "total_steps": 400}


def test_compare_takes_a_schedule_with_sched_settings(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "sgd,adam", "--schedule", "warmup_cosine",
                 "--steps", "60", "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["schedule"] for r in rows} == {"warmup_cosine"}
    out2 = tmp_path / "cmp2"
    assert main(["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "sgd", "--schedule", "wsd",
                 "--sched", "decay_steps=10", "--steps", "60", "--out", str(out2), "--quiet"]) == 0
    from descentlab.store import RunStore

    (run,) = RunStore(out2 / "runs.sqlite").runs("compare")
    assert run["config"]["schedule_kwargs"] == {"decay_steps": 10}


def test_compare_sched_without_schedule_is_an_error(tmp_path, capsys):
    assert main(["compare", "--workload", "linreg", "--sched", "warmup_steps=3", "--out", str(tmp_path / "x")]) == 2
    assert "give --schedule too" in capsys.readouterr().err


def test_a_short_run_of_a_wsd_recipe_keeps_a_decay_of_at_least_one_step():
    # mnist1d's recipe decays over 400 of 4000 steps: 4 steps scaled it to decay_steps=0,
    # which the schedule rejects, so `train --steps 4` failed on the default schedule
    plan = resolve(TrainConfig(workload="mnist1d-mlp", steps=4))
    assert plan["schedule"] == "wsd" and plan["schedule_kwargs"]["decay_steps"] == 1
