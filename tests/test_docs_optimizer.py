"""docs/your-own-optimizer.md runs as written: every `descentlab` command of its sh blocks, in
order, from a folder laid out as the repository's root; its YAML blocks are the example files;
its Python calls work.

The commands run with the page's flags, except shorter budgets (:data:`TEST_STEPS`): `train`'s
`--steps 1500` runs as `--steps 500`, `compare`'s `--steps 1500` as `--steps 100` and `tune`'s
`--steps 500` as `--steps 100` (the page's budgets cost the commands ~125 s of CPU on a 2-core
machine, these ~30 s; their flags are the page's otherwise). No assertion depends on the budget but
one: the class-default Signum run's test accuracy > 0.5, which it passes at 500 steps with room
(0.70; 0.88 at 1500; chance is 0.1). The number of rows, the lr sources, the verdict, the order of
the strategies, lr-find's result (its sweeps have their own fixed length) and the tune's trials are
the same at any budget. `test_the_page_has_the_commands_it_promises` checks the page's own flags."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import descentlab
from descentlab import optim
from descentlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "your-own-optimizer.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def commands() -> list[list[str]]:
    lines = [ln.strip() for block in blocks("sh") for ln in block.splitlines()]
    return [shlex.split(ln, comments=True)[1:] for ln in lines if ln.startswith("descentlab ")]


#: the page's --steps as this test runs them, by command and page value (see the module's docstring)
TEST_STEPS = {("train", "1500"): "500", ("compare", "1500"): "100", ("tune", "500"): "100"}


def shortened(argv: list[str]) -> list[str]:
    """``argv`` with its --steps replaced by :data:`TEST_STEPS`' (every --steps of the page is there)."""
    if "--steps" not in argv:
        return argv
    i = argv.index("--steps") + 1
    assert (argv[0], argv[i]) in TEST_STEPS, f"a budget the page did not have: {argv[0]} --steps {argv[i]}"
    return [*argv[:i], TEST_STEPS[(argv[0], argv[i])], *argv[i + 1:]]


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """Every command of the page, run in order in a copy of docs/examples at the same relative path."""
    root = tmp_path_factory.mktemp("doc")
    shutil.copytree(ROOT / "docs" / "examples", root / "docs" / "examples")
    here = os.getcwd()
    os.chdir(root)
    try:
        for argv in commands():
            assert main(shortened(argv)) == 0, argv
    finally:
        os.chdir(here)
    return root


def test_the_page_has_the_commands_it_promises():
    names = [argv[0] for argv in commands()]
    assert names.count("train") == 2 and {"lr-find", "compare", "tune"} <= set(names)
    compare = next(a for a in commands() if a[0] == "compare" and "--tune-lr" in a)
    assert "--seeds" in compare and compare[compare.index("--seeds") + 1] == "3"
    assert compare[compare.index("--optimizers") + 1].split(",")[1:] == ["adamw", "momentum", "lion"]
    assert "VERDICT" not in DOC.read_text(), "the verdict of a real run is on the page"


def test_the_yaml_blocks_are_the_example_files():
    strategies, space = (yaml.safe_load(b) for b in blocks("yaml"))
    assert strategies == yaml.safe_load((ROOT / "docs/examples/signum_strategies.yaml").read_text())
    assert space == yaml.safe_load((ROOT / "docs/examples/signum_space.yaml").read_text())


def test_train_starts_from_the_class_default_and_records_the_file(ran):
    summary = json.loads((ran / "runs/signum/summary.json").read_text())
    assert summary["hparams"] == {"lr": 0.001} and summary["lr_source"] == "the class default, untuned"
    assert summary["optimizer_source"]["qualname"] == "my_optimizer.py:Signum"
    assert summary["final"]["test_accuracy"] > 0.5
    decayed = json.loads((ran / "runs/signum-decay/summary.json").read_text())
    assert decayed["hparams"] == {"lr": 0.003, "momentum": 0.95} and decayed["schedule_kwargs"]["floor"] == 0.1


def test_the_comparison_tunes_every_strategy_and_has_a_verdict(ran):
    with open(ran / "runs/signum-vs/summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["lr_source"] for r in rows} == {"tuned (lr-find)"}
    html = (ran / "runs/signum-vs/report.html").read_text()
    assert 'id="verdict"' in html and "my_optimizer.py:Signum" in html
    with open(ran / "runs/signum-settings/summary.csv") as f:
        assert [r["strategy"] for r in csv.DictReader(f)][:3] == ["signum-0.95", "nesterov", "torch-adamw"]
    found = json.loads((ran / "runs/signum-lr/lr_find.json").read_text())
    assert found["lr_before"] == 0.001 and found["suggested_lr"] > 0
    assert json.loads((ran / "runs/signum-tune/tune.json").read_text())["n_trials"] == 4


def test_the_python_calls(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples"))
    from my_optimizer import Signum

    model = torch.nn.Linear(3, 2)
    assert type(optim.create("docs/examples/my_optimizer.py:Signum", model.parameters(), lr=3e-3)).__name__ == "Signum"
    assert isinstance(optim.create(Signum, model.parameters(), lr=3e-3), Signum)
    result = descentlab.compare("linreg", ["docs/examples/my_optimizer.py:Signum", "adamw"], steps=100, seeds=1,
                                tune_lr=True, out=tmp_path / "cmp", progress=False, log=lambda m: None)
    assert [r["strategy"] for r in result.rows] == ["my_optimizer.py:Signum", "adamw"]
