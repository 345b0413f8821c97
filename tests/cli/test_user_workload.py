"""A user's own workload file through `train` and `compare` (CLI and Python):
each data form trains, resumes exactly after SIGKILL, and compares; bad
factories are one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch

import descentlab
from descentlab.cli import main
from descentlab.train import checkpoint as ckpt
from tests import user_workload_file
from tests.processes import cli, kill_after_checkpoint, meanwhile

FORMS = user_workload_file.FORMS


@pytest.fixture
def problem(tmp_path):
    return user_workload_file.write(tmp_path)


def _cli(*args):
    return cli(*args, env={**os.environ, "DESCENTLAB_STRICT_TIMING": "1"})


def _rows(out):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((out / "metrics.csv").open())]


@pytest.mark.parametrize("form", FORMS)
def test_trains_and_resumes_exactly_after_sigkill(form, problem, tmp_path, monkeypatch):
    # 1000 steps (2500 before; the same test accuracies within 0.01): the kill lands after step 200,
    # with ~800 steps (over a second) left to land in
    args = ["train", "--workload", f"{problem}:{form}", "--optimizer", "adamw", "--schedule", "cosine",
            "--steps", "1000", "--checkpoint-every", "50", "--batch-size", "16", "--quiet"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    killed_at = kill_after_checkpoint(_cli(*args, "--out", str(killed)), killed / "checkpoints", 200)
    assert 0 < killed_at < 1000 and killed_at % 38 != 0, "the kill should land mid-run and mid-epoch (38 batches)"

    with meanwhile(*args, "--out", str(killed), "--resume"):  # the uninterrupted run here meanwhile
        monkeypatch.setenv("DESCENTLAB_STRICT_TIMING", "1")
        assert main([*args, "--out", str(full)]) == 0

    a, b = (ckpt.load_latest(d / "checkpoints")[0] for d in (full, killed))
    assert a["loop"]["step"] == b["loop"]["step"] == 1000
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _rows(full) == _rows(killed)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert sa["final"] == sb["final"] and sa["best"] == sb["best"]
    metric = sa["metric"]
    assert metric == ("error_rate" if form == "own_loss" else "accuracy")
    # it learned: three separable-ish blobs, chance is 2/3 error
    value = sa["final"][f"test_{metric}"]
    assert (value < 0.3) if form == "own_loss" else (value > 0.7), sa["final"]


@pytest.mark.parametrize("form", FORMS)
def test_compares_through_the_cli(form, problem, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--jobs", "1", "--workload", f"{problem}:{form}", "--optimizers", "sgd,adam", "--steps", "120",
                 "--seeds", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["strategy"], r["seed"]) for r in rows] == [("sgd", "0"), ("adam", "0"), ("sgd", "1"), ("adam", "1")]
    assert all(r["status"] == "finished" and float(r["best_metric"]) == float(r["best_metric"]) for r in rows)
    assert "blobs" in (out / "report.html").read_text()


def test_compares_through_python_with_a_reference_a_factory_and_a_workload(problem, tmp_path):
    ref = f"{problem}:dict_dataset"
    from descentlab.workloads.user import factory

    fn = factory(ref)
    results = [descentlab.compare(w, ["momentum", {"name": "adam-hi", "optimizer": "adam", "lr": 3e-3}], steps=60,
                                  out=tmp_path / f"c{i}", progress=False, log=lambda m: None)
               for i, w in enumerate((ref, fn, fn(seed=0)))]
    for result in results:
        assert result.report.is_file() and result.summary_csv.is_file()
        assert [r["strategy"] for r in result.rows] == ["momentum", "adam-hi"]
    # the same workload, seed and budget: the same numbers whichever way it was given
    finals = [[r["final_metric"] for r in res.rows] for res in results]
    assert finals[0] == finals[1] == finals[2]
    assert results[0].rows[1]["lr"] == 3e-3


BAD = [
    ("missing.py:tensors", "does not exist"),
    ("{file}:nope", "has no function 'nope'"),
    ("{broken}:tensors", "failed to import: ZeroDivisionError: division by zero"),
    ("{file}:not_a_workload", "returned int, expected a descentlab.workloads.Workload"),
    ("{file}:raises", "raised RuntimeError: the data server is down"),
    ("no_such_module_xyz:make", "workload module 'no_such_module_xyz' not found"),
    ("{file}:", "expected path/to/file.py:FUNC"),
]


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("ref,message", BAD)
def test_bad_workload_is_one_line_exit_2_and_writes_nothing(command, ref, message, problem, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\nx = 1 / 0\n")
    out = tmp_path / "out"
    workload = ref.format(file=problem, broken=broken)
    extra = ["--steps", "5"] if command == "train" else ["--optimizers", "sgd", "--steps", "5"]
    assert main([command, "--workload", workload, *extra, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    if "broken" in ref:
        assert "broken.py" in err  # the error names the file
    assert not out.exists()


def test_two_data_parallel_processes_equal_one_on_a_dict_dataset(problem, tmp_path):
    """`train --nproc 2` (gloo on loopback) on a user's Dataset of dict batches:
    each rank takes its rows of every global batch, and the result is one process's."""
    outs = {}
    for nproc in (1, 2):
        outs[nproc] = tmp_path / f"n{nproc}"
        assert main(["train", "--workload", f"{problem}:dict_dataset", "--steps", "120", "--nproc", str(nproc),
                     "--out", str(outs[nproc]), "--quiet"]) == 0
    one, two = (json.loads((outs[n] / "summary.json").read_text()) for n in (1, 2))
    assert two["nproc"] == 2 and two["steps"] == one["steps"] == 120
    for key, value in one["final"].items():
        assert two["final"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    a, b = (ckpt.load_latest(outs[n] / "checkpoints")[0]["model"] for n in (1, 2))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
