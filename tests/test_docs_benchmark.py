"""docs/benchmark.md as written: its suite block is docs/examples/my_suite.yaml, that suite runs
with the page's command (the `auto` targets set on the user's workload first), `descentlab report`
renders it again, its search-space block is accepted, and the Python call's form works."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

import descentlab
from descentlab.benchmark.api import strategies_and_spaces
from descentlab.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmark.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_suite_block_is_the_example_file():
    suite = next(b for b in blocks("yaml") if b.startswith("name: my-suite"))
    example = yaml.safe_load((ROOT / "docs" / "examples" / "my_suite.yaml").read_text())
    assert yaml.safe_load(suite) == example


def test_the_search_space_block_is_accepted(tmp_path):
    block = next(b for b in blocks("yaml") if "space:" in b)
    path = tmp_path / "strategies.yaml"
    path.write_text(block)
    strategies, spaces = strategies_and_spaces(None, str(path))
    assert [s.label for s in strategies] == ["adamw", "lion"]
    assert spaces["adamw"]["lr"] == {"factor": 10.0} and spaces["adamw"]["betas"]["choices"][1] == [0.95, 0.98]
    assert spaces["lion"]["lr"] == {"low": 1e-5, "high": 1e-3, "log": True}


def test_the_page_s_own_suite_runs_and_its_report_renders_again(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    line = next(ln for b in blocks("sh") for ln in b.splitlines() if "my_suite.yaml" in ln)
    argv = line.split("#")[0].split()[1:]
    assert main(argv) == 0
    out = Path("runs/my-suite")
    data = json.loads((out / "benchmark.json").read_text())
    assert set(data["workloads"]) == {"digits-mlp", "two-moons"}
    assert set(data["target_setting"]) == {"two-moons/base", "two-moons/variant"}
    assert data["workloads"]["two-moons"]["variant"]["changes"] == "data seed 1"
    assert set(data["scores"]) == {"sgd", "adam", "lion"}
    (out / "report.html").unlink()
    report = next(ln for b in blocks("sh") for ln in b.splitlines() if ln.startswith("descentlab report"))
    assert main(report.split("#")[0].split()[1:]) == 0
    assert "two-moons" in (out / "report.html").read_text()


def test_the_python_call_s_form_works(tmp_path):
    from tests.cli.test_benchmark import SUITE

    (tmp_path / "tiny.yaml").write_text(SUITE)
    result = descentlab.benchmark(str(tmp_path / "tiny.yaml"),
                                  ["sgd", "adam", {"optimizer": "lion", "space": {"lr": {"factor": 10}}}],
                                  ruleset="external", trials=2, seeds=1, jobs=1, out=tmp_path / "out")
    assert set(result.scores) == {"sgd", "adam", "lion"}
    assert set(result.score_ci) == set(result.scores) and result.report.is_file()
    assert set(result.times["lion"]) == {"linreg", "diabetes"}
