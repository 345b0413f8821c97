"""`train --tensorboard DIR` and `compare --tensorboard DIR` write event files
that tensorboard's own reader reads back with the runs' values."""

from __future__ import annotations

import csv

import pytest

from descentlab.cli import main

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is a test dependency")


def _scalars(folder):
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_writes_the_metrics_csv_values(tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert main(["train", "--workload", "linreg", "--steps", "40", "--out", str(out), "--tensorboard", str(tb),
                 "--quiet"]) == 0
    scalars = _scalars(tb)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    losses = [(int(r["step"]), float(r["train_loss"])) for r in rows if r.get("train_loss")]
    assert [s for s, _ in scalars["train_loss"]] == [s for s, _ in losses] == list(range(1, 41))
    assert [v for _, v in scalars["train_loss"]] == pytest.approx([v for _, v in losses], rel=1e-6)  # float32 events
    assert "val_r2" in scalars and "lr" in scalars


def test_compare_writes_one_run_folder_per_strategy_and_seed(tmp_path):
    tb = tmp_path / "tb"
    assert main(["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "sgd,adam", "--seeds", "2", "--steps", "30",
                 "--out", str(tmp_path / "cmp"), "--tensorboard", str(tb), "--quiet"]) == 0
    runs = sorted(str(p.relative_to(tb)) for p in tb.glob("*/*") if p.is_dir())
    assert runs == ["adam/seed0", "adam/seed1", "sgd/seed0", "sgd/seed1"]
    for run in runs:
        scalars = _scalars(tb / run)
        assert [s for s, _ in scalars["train_loss"]] == list(range(1, 31))
