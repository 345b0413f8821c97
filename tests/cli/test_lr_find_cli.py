"""`descentlab lr-find`: lr_find.json and lr_find.png; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from descentlab.cli import main


def test_writes_the_curve_the_suggestion_and_its_confidence(tmp_path, capsys):
    out = tmp_path / "lf"
    assert main(["lr-find", "--workload", "digits-mlp", "--optimizer", "momentum", "--num-steps", "40",
                 "--out", str(out)]) == 0
    data = json.loads((out / "lr_find.json").read_text())
    for key in ("suggested_lr", "rule", "lrs", "losses", "raw_losses", "confidence", "candidates", "sweeps"):
        assert key in data, key
    assert data["rule"] == "centered" and data["optimizer"] == "momentum" and data["workload"] == "digits-mlp"
    assert len(data["lrs"]) == len(data["losses"]) <= 40
    assert data["confidence"]["sweeps"] == 3 and data["confidence"]["spread"] >= 1.0
    assert set(data["candidates"]) == {"valley", "steepest", "minimum", "centered"}
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = capsys.readouterr().out
    assert f"suggested lr {data['suggested_lr']:.3g}" in line


def test_a_rule_and_one_sweep(tmp_path):
    out = tmp_path / "lf"
    assert main(["lr-find", "--workload", "linreg", "--optimizer", "adam", "--rule", "valley", "--sweeps", "1",
                 "--num-steps", "30", "--out", str(out)]) == 0
    data = json.loads((out / "lr_find.json").read_text())
    assert data["rule"] == "valley" and data["suggested_lr"] == data["candidates"]["valley"]
    assert data["confidence"]["spread"] is None


@pytest.mark.parametrize("args, words", [
    (["--start-lr", "1", "--end-lr", "0.1"], "start_lr=1.0 >= end_lr=0.1"),
    (["--num-steps", "2"], "num_steps=2"),
    (["--sweeps", "0"], "sweeps=0"),
    (["--optimizer", "nosuch"], "nosuch"),
    (["--workload", "nosuch"], "nosuch"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    out = tmp_path / "lf"
    cmd = [sys.executable, "-m", "descentlab", "lr-find", "--workload", "linreg", *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("descentlab: error:") and words in lines[0], proc.stderr
    assert not out.exists()
