"""`compare --tune-lr`: every strategy tuned with the same budget before the comparison."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from descentlab.cli import main
from descentlab.store import RunStore


def _rows(out):
    return {r["strategy"]: r for r in csv.DictReader((out / "summary.csv").open())}


def test_lr_find_mode_trains_each_strategy_at_its_suggestion(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "sgd,adam", "--steps", "40", "--tune-lr",
                 "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    for label in ("sgd", "adam"):
        found = json.loads((out / "lr_find" / label / "lr_find.json").read_text())
        assert found["strategy"] == label and found["confidence"]["sweeps"] == 3
        assert float(rows[label]["lr"]) == pytest.approx(found["suggested_lr"])
        assert (out / "lr_find" / label / "lr_find.png").exists()
    runs = RunStore(out / "runs.sqlite").runs("compare")
    assert {r["config"]["tuned"] for r in runs} == {"lr-find"}
    assert "tuned by <b>lr-find</b>" in (out / "report.html").read_text()


def test_sweep_mode_keeps_the_best_of_five_short_runs(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--jobs", "1", "--workload", "linreg", "--optimizers", "adam", "--steps", "50", "--tune-lr", "sweep",
                 "--out", str(out), "--quiet"]) == 0
    tune_runs = RunStore(out / "runs.sqlite").runs("tune")
    assert len(tune_runs) == 5
    best = max(tune_runs, key=lambda r: r["summary"]["best_metric"])
    assert float(_rows(out)["adam"]["lr"]) == pytest.approx(best["config"]["lr"])
    assert not (out / "lr_find").exists()


def test_an_unknown_tuning_mode_is_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "descentlab", "compare", "--workload", "linreg", "--optimizers",
                           "adam", "--tune-lr", "magic", "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "magic" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
