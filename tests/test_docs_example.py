"""The example workload file of docs/your-own-problem.md runs as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import descentlab
from descentlab.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_workload.py"


@pytest.mark.parametrize("func", ["tensors", "dataset", "own_loss"])
def test_every_example_factory_trains_from_the_command_line(func, tmp_path):
    out = tmp_path / func
    assert main(["train", "--workload", f"{EXAMPLE}:{func}", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 300
    metric = summary["metric"]
    value = summary["final"][f"test_{metric}"]
    assert (value > 0.9) if metric == "accuracy" else (value < 0.1), summary["final"]  # two moons: nearly separable


def test_the_documented_python_call(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    import my_workload

    result = descentlab.compare(my_workload.tensors, ["sgd", "adam"], steps=200, out=tmp_path / "cmp",
                                progress=False, log=lambda m: None)
    assert [r["strategy"] for r in result.rows] == ["sgd", "adam"] and result.report.is_file()
