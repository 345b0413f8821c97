"""`descentlab prune`: summary.json with both models measured, report.html, model files that
load in a fresh process; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..report.test_browser import _browse, chromium  # noqa: F401  (the fixture)

MODEL_KEYS = ("test_accuracy", "parameters", "nonzero_parameters", "bytes", "flops", "latency_ms_p50",
              "latency_ms_p95", "latency_ms_p50_batch", "latency_ms_p95_batch")
TINY = ["--workload", "mnist1d-cnn", "--steps", "150", "--finetune-steps", "80", "--latency-runs", "5"]


def _prune(out, *args: str) -> str:
    """The command in this process (the shell's exit-2 path is tested below); its stdout."""
    import contextlib
    import io

    from descentlab.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["prune", *TINY, *args, "--out", str(out)]) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def unstructured(tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "u"
    return out, _prune(out, "--sparsity", "0.8", "--curve", "0,0.5")


@pytest.fixture(scope="module")
def structured(tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "s"
    return out, _prune(out, "--sparsity", "0.5", "--structured", "--curve", "none")


def test_unstructured_summary_has_both_models_measured(unstructured):
    out, stdout = unstructured
    s = json.loads((out / "summary.json").read_text())
    for name in ("dense", "pruned"):
        for key in MODEL_KEYS:
            assert isinstance(s[name][key], (int, float)), (name, key)
    d, p = s["dense"], s["pruned"]
    assert d["parameters"] == p["parameters"] == 5210  # unstructured: the shapes stay
    assert d["nonzero_parameters"] == 5210
    prunable = 5210 - 25 * 3 - 10  # the weights; biases stay dense
    assert abs((5210 - p["nonzero_parameters"]) / prunable - 0.8) < 0.01
    assert p["bytes"] < d["bytes"]  # mostly-zero weights stored packed
    assert d["flops"] == p["flops"] > 0  # dense kernels: a zero still costs its multiply-add
    assert [pt["sparsity"] for pt in s["curve"]] == [0.0, 0.5, 0.8]
    assert s["structured"] is False and s["scope"] == "global" and s["finetune_steps"] == 80
    assert s["batch_size"] == 100 and s["latency"]["runs"] == 5
    assert "pruned: test_accuracy" in stdout and "dense: test_accuracy" in stdout


def test_structured_makes_a_smaller_model_that_loads_in_a_fresh_process(structured):
    out, _ = structured
    s = json.loads((out / "summary.json").read_text())
    assert s["pruned"]["parameters"] <= 0.55 * s["dense"]["parameters"]
    assert s["pruned"]["flops"] < s["dense"]["flops"]
    code = (
        "import sys, torch\n"
        "from descentlab.compress import load_model\n"
        f"m = load_model({str(out / 'pruned-50.pt')!r})\n"
        "print(sum(p.numel() for p in m.parameters()), tuple(m(torch.zeros(3, 40)).shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(s["pruned"]["parameters"]) and "(3, 10)" in done.stdout


@pytest.mark.slow
def test_the_report_renders_in_chromium(chromium, unstructured, tmp_path):  # noqa: F811
    out, _ = unstructured
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "Accuracy against sparsity" in html
    proc = _browse(chromium, tmp_path, "--dump-dom", (out / "report.html").as_uri())
    assert proc.returncode == 0, proc.stderr
    assert "Dense and pruned" in proc.stdout and "bytes on disk" in proc.stdout and "<img" in proc.stdout


HARD = '''
import torch
from torch import nn
from descentlab.workloads import Workload

class Fixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 3)
        self.out = nn.Linear(8 * 38, 3)

    def forward(self, x):
        return self.out(self.conv(x.view(-1, 1, 40)).view(-1, 8 * 38))

def make(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(60, 40, generator=g), torch.randint(0, 3, (60,), generator=g)
    return Workload(name="fixed", train=(x, y), val=(x, y), test=(x, y), make_model=Fixed,
                    loss_fn=nn.CrossEntropyLoss(), metric="accuracy")
'''


@pytest.mark.parametrize("args, words", [
    (["--sparsity", "1.0"], "sparsity=1.0"),
    (["--sparsity", "-0.1"], "sparsity=-0.1"),
    (["--sparsity", "half"], "invalid sparsity 'half'"),
    (["--sparsity", "1.2", "--structured"], "channel sparsity=1.2"),
    (["--sparsity", "0.5", "--curve", "0,1.5"], "curve sparsity=1.5"),
    (["--sparsity", "0.5", "--finetune-steps", "0"], "finetune_steps=0"),
    ([], "no sparsity given"),
    (["--sparsity", "0.5", "--structured", "--workload", "{file}:make"], "no longer runs once channels of conv"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    from descentlab.cli import main

    (tmp_path / "fixed.py").write_text(HARD)
    args = [a.replace("{file}", str(tmp_path / "fixed.py")) for a in args]
    out = tmp_path / "out"
    assert main(["prune", "--workload", "mnist1d-cnn", *args, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("descentlab: error:") and words in lines[0], lines
    assert not out.exists()


def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "descentlab", "prune", "--workload", "mnist1d-cnn", "--sparsity", "1.0",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "sparsity=1.0" in proc.stderr and not out.exists()


@pytest.mark.parametrize("structured", [False, True])
def test_prune_then_distill_is_one_pipeline(structured):
    from descentlab.compress import prune

    result = prune("mnist1d-cnn", 0.5, structured=structured, steps=60, finetune_steps=40, curve=(), distill=True,
                   latency_runs=3, log=lambda msg: None)
    s = result.summary
    assert s["distill"] is True and [pt["sparsity"] for pt in s["curve"]] == [0.5]
    if structured:
        assert s["pruned"]["parameters"] <= 0.55 * s["dense"]["parameters"]
    else:
        assert s["pruned"]["nonzero_parameters"] < 0.6 * s["dense"]["nonzero_parameters"]
    # the teacher was a frozen copy: the dense model still trains
    assert all(p.requires_grad for p in result.models["dense"].parameters())
