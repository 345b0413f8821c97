"""The real models of ``tests/realmodels.py`` through every single-process command, by the CLI.

``gpt2`` (a Hugging Face GPT-2: dict batches, its own loss, tied embeddings, metric the loss),
``resnet`` (a ResNet with BatchNorm: running statistics as buffers) and ``oddparts`` (an MLP with
a frozen layer, a parameter the loss never reaches, and a buffer) through ``train``, ``compare``,
``lr-find``, ``tune``, ``prune`` and ``distill``. Each run is a few steps; each test checks
what could go wrong with such a model: the files, a finite metric, a loss that went down, the
frozen and the unused parameters untouched, the buffers saved, the tied weights tied, a model
file that reloads to the measured metric — or, where a command cannot handle a model (GPT-2's
attention under the structured pruner), one line that names the part and exit status 2.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.compress.fit import evaluate
from descentlab.compress.saved import load_model
from descentlab.train import checkpoint as ckpt
from descentlab.workloads import load

torch.set_num_threads(1)

REAL = Path(__file__).resolve().parent / "realmodels.py"
NAMES = ("gpt2", "resnet", "oddparts")
#: the summary key of each workload's test metric
METRIC = {"gpt2": "test_loss", "resnet": "test_accuracy", "oddparts": "test_accuracy"}


def spec(name: str) -> str:
    return f"{REAL}:{name}"


def initial_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model a run of ``seed`` starts from (its initialisation is drawn after ``manual_seed(seed)``)."""
    wl = load(spec(name), seed=seed)
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in wl.make_model().state_dict().items()}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# -- train ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_train(name, tmp_path, capsys):
    out = tmp_path / "run"
    # an evaluation and a checkpoint every 4 steps, between steps as at the default's every step (a
    # run this short would evaluate and checkpoint after each one: most of its time)
    assert main(["train", "--workload", spec(name), "--steps", "12", "--eval-every", "4", "--checkpoint-every", "4",
                 "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 12 and _finite(summary["final"][METRIC[name]]), summary["final"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]), losses  # it learned
    state = ckpt.load_latest(out / "checkpoints")[0]["model"]
    init = initial_state(name)
    assert set(state) == set(init)
    changed = {k for k in init if not torch.equal(init[k], state[k])}
    if name == "oddparts":
        # the frozen layer and the head the loss never reaches are exactly as initialised, the buffer saved
        assert changed == {"hidden.weight", "hidden.bias", "head.weight", "head.bias"}, changed
        assert torch.equal(state["scale"], torch.linspace(0.5, 1.5, 64))
    elif name == "resnet":
        bn = [k.removesuffix(".running_mean") for k in state if k.endswith(".running_mean")]
        assert len(bn) == 6  # stem, two per block, the shortcut's
        for k in bn:  # the running statistics moved from (0, 1) and were saved
            assert f"{k}.running_mean" in changed and f"{k}.running_var" in changed
            assert int(state[f"{k}.num_batches_tracked"]) == 12
    else:
        assert torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])  # still tied
        assert "transformer.wte.weight" in changed and "transformer.h.1.mlp.c_fc.weight" in changed


#: issue 33's optimizers (CLI arguments), with their preconditioners switched on within a short run
MODERN = {
    "soap": ["--opt", "precondition_frequency=3"],
    "shampoo": ["--opt", "start_preconditioning_step=2", "--opt", "preconditioning_compute_steps=3"],
    # Kron starts from Q = I (precondition_init_scale=1): its first steps are momentum SGD on
    # the gradient's scale, which on GPT-2 moves nothing in 10 steps at the Adam-like default
    # (pytorch_optimizer.Kron alike: 3.878 -> 3.879); 0.03 shows them learning
    "kron": ["--lr", "0.03"],
    "normuon": [],
    "mars": [],
    "ademamix": ["--opt", "cautious=true"],
    "adopt": ["--opt", "state_dtype=bfloat16"],
}


@pytest.mark.parametrize("opt", list(MODERN))
def test_the_modern_optimizers_train_gpt2_and_the_resnet(opt, tmp_path):
    """Tied embeddings (one tensor, two uses), conv kernels and BatchNorm's 1-D weights,
    the frozen and unused parameters of oddparts: every one of them trains, keeps the
    tie and leaves what it must not touch as it was."""
    for name in NAMES:
        out = tmp_path / name
        assert main(["train", "--workload", spec(name), "--optimizer", opt, *MODERN[opt], "--steps", "10",
                     "--eval-every", "5", "--checkpoint-every", "5", "--out", str(out), "--quiet"]) == 0
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
        assert len(losses) == 10 and all(map(math.isfinite, losses)), (name, losses)
        assert sum(losses[-3:]) < sum(losses[:3]), (name, losses)  # it learned
        state = ckpt.load_latest(out / "checkpoints")[0]["model"]
        init = initial_state(name)
        changed = {k for k in init if not torch.equal(init[k], state[k])}
        if name == "gpt2":
            assert torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])
            assert "transformer.wte.weight" in changed
        elif name == "oddparts":
            assert changed == {"hidden.weight", "hidden.bias", "head.weight", "head.bias"}, changed
        else:
            assert {k for k in init if k.endswith("conv1.weight")} <= changed


# -- compare, lr-find, tune -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_compare(name, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--workload", spec(name), "--optimizers", "adam,sgd", "--steps", "8", "--eval-every", "4",
                 "--jobs", "1", "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted(r["strategy"] for r in rows) == ["adam", "sgd"] and {r["status"] for r in rows} == {"finished"}
    for r in rows:
        assert _finite(float(r["final_metric"])) and _finite(float(r["test_final_metric"])), r
    if name == "gpt2":  # the validation loss fell below a uniform guess over the 48 tokens
        adam = next(r for r in rows if r["strategy"] == "adam")
        assert float(adam["final_metric"]) < math.log(48)
    else:
        assert all(0.0 <= float(r["final_metric"]) <= 1.0 for r in rows)
    assert (out / "report.html").stat().st_size > 10_000 and (out / "runs.sqlite").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_lr_find(name, tmp_path):
    out = tmp_path / "lrf"
    assert main(["lr-find", "--workload", spec(name), "--num-steps", "30", "--sweeps", "1", "--out", str(out)]) == 0
    found = json.loads((out / "lr_find.json").read_text())
    assert _finite(found["suggested_lr"]) and 1e-7 < found["suggested_lr"] < 10.0, found["suggested_lr"]
    assert len(found["lrs"]) == len(found["losses"]) >= 10 and (out / "lr_find.png").stat().st_size > 0


@pytest.mark.parametrize("name", NAMES)
def test_tune_and_train_its_best_config(name, tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", "--workload", spec(name), "--trials", "2", "--steps", "8", "--jobs", "1", "--out", str(out),
                 "--quiet"]) == 0
    result = json.loads((out / "tune.json").read_text())
    assert result["n_trials"] == 2 and _finite(result["best_value"]) and (out / "study.sqlite").is_file()
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "best.yaml"), "--steps", "3", "--out", str(again), "--quiet"]) == 0
    assert json.loads((again / "summary.json").read_text())["steps"] == 3


# -- prune ----------------------------------------------------------------------------

PRUNE = ["--sparsity", "0.5", "--steps", "8", "--finetune-steps", "8", "--curve", "none", "--latency-runs", "3"]


def _prune(name: str, out: Path, *extra: str) -> dict:
    assert main(["prune", "--workload", spec(name), *PRUNE, *extra, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "report.html").is_file()
    for model in ("dense", "pruned"):
        m = summary[model]
        assert _finite(m[METRIC[name]]) and m["flops"] > 0 and m["bytes"] > 0 and m["latency_ms_p50"] > 0, m
    return summary


@pytest.mark.parametrize("name", ["resnet", "oddparts"])
def test_structured_prune_slices_the_model_and_the_file_reloads_to_the_measured_accuracy(name, tmp_path):
    out = tmp_path / "prune"
    summary = _prune(name, out, "--structured")
    dense, pruned = summary["dense"], summary["pruned"]
    assert pruned["parameters"] < dense["parameters"]
    wl = load(spec(name))
    model = load_model(out / "pruned-50.pt", wl.make_model)  # weights, BatchNorm statistics and buffers
    assert sum(p.numel() for p in model.parameters()) == pruned["parameters"]
    assert evaluate(wl, model)["accuracy"] == pytest.approx(pruned["test_accuracy"], abs=1e-6)
    if name == "oddparts":
        dense_model = load_model(out / "dense.pt", wl.make_model)
        state, init = model.state_dict(), initial_state(name)
        assert torch.equal(state["scale"], init["scale"])  # the buffer, saved and loaded
        for k in ("embed.weight", "embed.bias", "unused.weight", "unused.bias"):  # frozen, never reached: whole
            assert torch.equal(state[k], init[k]) and torch.equal(state[k], dense_model.state_dict()[k]), k
        assert not model.embed.weight.requires_grad


def test_structured_prune_of_gpt2_is_refused_naming_the_layer(tmp_path, capsys):
    out = tmp_path / "prune"
    assert main(["prune", "--workload", spec("gpt2"), *PRUNE, "--structured", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("descentlab: error:"), err
    assert "'transformer.h.0.attn.c_attn'" in err[0] and "Conv1D" in err[0] and "without --structured" in err[0]
    assert not out.exists()


def test_unstructured_prune_of_gpt2_zeroes_the_transformer_layers_and_keeps_the_tie(tmp_path):
    out = tmp_path / "prune"
    summary = _prune("gpt2", out, "--distill")  # fine-tuned on the dense model's per-token soft targets
    dense, pruned = summary["dense"], summary["pruned"]
    assert summary["distill"] is True
    wl = load(spec("gpt2"))
    fresh = wl.make_model()
    unique = sum(p.numel() for p in fresh.parameters())  # the tied embedding counted once
    assert dense["parameters"] == pruned["parameters"] == unique == fresh.num_parameters()
    model = load_model(out / "pruned-50.pt", wl.make_model)
    assert model.lm_head.weight is model.transformer.wte.weight
    for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):  # Hugging Face's Conv1D layers
        w = model.get_submodule(f"transformer.h.0.{layer}").weight
        assert 0.2 < float((w == 0).float().mean()) < 0.9, layer
    assert pruned["nonzero_parameters"] < 0.6 * dense["nonzero_parameters"]
    assert evaluate(wl, model)["loss"] == pytest.approx(pruned["test_loss"], rel=1e-6)


# -- distill --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_distill(name, tmp_path):
    out = tmp_path / "distill"
    assert main(["distill", "--workload", spec(name), "--steps", "6", "--teacher-steps", "6", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    key = METRIC[name]
    for model in ("teacher", "student", "scratch"):
        assert _finite(s[model][key]) and s[model]["parameters"] > 0, s[model]
    assert s["margin"] == pytest.approx(s["student"][key] - s["scratch"][key])
    if name == "gpt2":  # per token, the default student: half the teacher's layers
        assert (s["per"], s["shift"], s["metric_mode"]) == ("token", True, "min")
        assert "test_accuracy" not in s["student"]
        assert s["student"]["arch"] == "layers=1" and s["student"]["parameters"] < s["teacher"]["parameters"]
    else:
        assert (s["per"], s["metric_mode"], s["cached"]) == ("example", "max", True)
        assert 0.0 <= s["student"]["test_accuracy"] <= 1.0
    assert "<table" in (out / "report.html").read_text()
