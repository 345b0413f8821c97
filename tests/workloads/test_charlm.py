"""The charlm workload on tiny configurations: data pipeline, vocabulary,
metric, Muon's groups, --data-dir errors, and exact resume after SIGKILL.
The full-size runs are benchmarks (BENCHMARKS.md), not tests."""

from __future__ import annotations

import json
import math

import pytest
import torch

from descentlab import optim, workloads
from descentlab.cli import main
from descentlab.optim.groups import names_of
from descentlab.train import Trainer
from descentlab.train import checkpoint as ckpt
from descentlab.workloads import charlm, text
from tests.processes import cli, kill_after_checkpoint

TINY = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}


@pytest.fixture(scope="module")
def tiny():
    return charlm.build(0, model=TINY, corpus_chars=20_000)


def test_default_corpus_is_the_torch_sources_with_its_checksum(tiny):
    info = tiny.info
    assert info["characters"] == 20_000 and info["torch_version"] == torch.__version__
    assert info["first_file"] == "_VF.py" and len(info["sha256"]) == 64
    again = charlm.build(0, model=TINY, corpus_chars=20_000)
    assert again.info["sha256"] == info["sha256"]  # deterministic
    assert 3.0 < info["unigram_bpc"] < 6.0  # Python source: a few bits per character
    assert info["split_characters"] == {"train": 18_000, "val": 1_000, "test": 1_000}


def test_windows_are_seeded_and_shifted_by_one(tiny):
    x, y = tiny.train
    assert x.shape == y.shape == ((18_000 - 1) // 16, 16) and x.dtype == torch.int64  # (len - 1) // block windows
    assert torch.equal(x[:, 1:], y[:, :-1])  # target = input shifted by one character
    other = charlm.build(1, model=TINY, corpus_chars=20_000)
    assert not torch.equal(other.train[0], x)  # the seed draws the window positions
    assert torch.equal(other.val[0], tiny.val[0]) and torch.equal(other.test[0], tiny.test[0])
    vx, vy = tiny.val
    assert torch.equal(vx.reshape(-1)[1:], vy.reshape(-1)[:-1])  # consecutive windows


def test_unknown_characters_map_to_the_unknown_id(tmp_path):
    body = "abcab " * 900  # train: a, b, c, space
    (tmp_path / "input.txt").write_text(body + "xyz\u00e9" * 40 + "abc " * 60, encoding="utf-8")
    w = charlm.build(0, tmp_path, model=TINY)
    assert w.info["vocabulary"] == 5  # 4 characters + unknown
    assert w.info["unknown_characters"]["val"] + w.info["unknown_characters"]["test"] > 0
    assert int((w.test[0] == text.UNKNOWN).sum()) + int((w.val[0] == text.UNKNOWN).sum()) > 0
    vocab = text.Vocabulary("abc")
    assert vocab.decode(vocab.encode("cab?")) == "cab\ufffd"


def test_bpc_is_the_loss_in_bits_and_training_lowers_it(tiny):
    torch.manual_seed(0)
    model = tiny.make_model()
    opt = optim.create("adamw", model.parameters(), lr=3e-3)
    trainer = Trainer(model, opt, tiny.loss_fn, batch_size=16, metrics={"bpc": tiny.metric_fn})
    before = trainer.evaluate(tiny.val)
    assert before["bpc"] == pytest.approx(before["loss"] / math.log(2))
    assert before["bpc"] == pytest.approx(math.log2(tiny.info["vocabulary"]), rel=0.05)  # near uniform at init
    trainer.fit(tiny.train, max_steps=150)
    after = trainer.evaluate(tiny.val)
    assert after["bpc"] < tiny.info["unigram_bpc"] < before["bpc"]


def test_muon_keeps_embeddings_head_and_non_matrices_on_adamw(tiny):
    model = tiny.make_model()
    groups = tiny.param_groups("muon", model)
    adamw, muon = names_of(groups)
    assert {"wte.weight", "wpe.weight", "lm_head.weight"} <= set(adamw)
    assert all(name.endswith(".weight") and "ln" not in name for name in muon)
    params = dict(model.named_parameters())
    assert all(params[n].ndim == 2 for n in muon) and len(adamw) + len(muon) == len(params)
    opt = optim.create("muon", groups, lr=0.02)
    assert [g["use_muon"] for g in opt.param_groups] == [False, True]
    assert tiny.param_groups("adamw", model) is not None


def test_param_groups_select_by_module_type_and_name():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups = optim.param_groups(model, {"modules": ["LayerNorm"], "weight_decay": 0.0},
                                {"names": ["1.*"], "lr": 0.1})
    assert names_of(groups) == [["2.weight", "2.bias"], ["1.weight", "1.bias"], ["0.weight"]]
    assert groups[0]["weight_decay"] == 0.0 and groups[1]["lr"] == 0.1 and "lr" not in groups[2]
    with pytest.raises(ValueError, match="needs a selector"):
        optim.param_groups(model, {"lr": 0.1})


def _input(folder, content: bytes | None):
    folder.mkdir()
    if content is not None:
        (folder / "input.txt").write_bytes(content)
    return folder


@pytest.mark.parametrize("content,message", [
    (None, "not found"),
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"caf\xe9 latin-1 text", "is not UTF-8 text: byte 0xe9 at offset 3"),
    (b"too short", "too short for charlm"),
])
def test_data_dir_errors_are_one_line_exit_2_nothing_written(content, message, tmp_path, capsys):
    folder = _input(tmp_path / "data", content)
    out = tmp_path / "out"
    assert main(["train", "--workload", "charlm", "--data-dir", str(folder), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "input.txt" in err or message == "too short for charlm" and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_sigkill_mid_run_then_resume_is_exact(tmp_path):
    """The default model on a small --data-dir corpus, killed with SIGKILL mid-epoch."""
    data = _input(tmp_path / "data", ("def f(x):\n    return x * 2\n" * 400).encode() + b"class A:\n    pass\n" * 300)
    args = ["train", "--workload", "charlm", "--data-dir", str(data), "--steps", "160", "--checkpoint-every", "10",
            "--batch-size", "8", "--quiet"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = cli(*args, "--out", str(full))
    killed_at = kill_after_checkpoint(cli(*args, "--out", str(killed)), killed / "checkpoints", 40)
    assert 0 < killed_at < 160
    resumed = cli(*args, "--out", str(killed), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()
    a, b = (ckpt.load_latest(d / "checkpoints")[0] for d in (full, killed))
    assert a["loop"]["step"] == b["loop"]["step"] == 160
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert sa["final"] == sb["final"] and "test_bpc" in sa["final"] and "val_bpc" in sa["final"]


def test_listed():
    assert "charlm" in workloads.available()


def test_the_default_recipe_builds_and_nothing_is_seeded_globally():
    from descentlab.experiment.build import build
    from descentlab.workloads.recipes import RECIPE_KEYS
    from tests.workloads.rng import assert_no_global_draws

    w = assert_no_global_draws(lambda: workloads.load("charlm"))
    r = w.recipe
    assert tuple(r) == RECIPE_KEYS and r["optimizer"] == "adamw" and r["schedule"] == "wsd"
    assert set(w.lr_defaults) == set(optim.available()) and w.default_lr("adamw") == r["lr"]
    model, opt, sched = build(w, "muon", {"lr": w.default_lr("muon")}, r["schedule"], r["schedule_kwargs"],
                              seed=0, total_steps=r["steps"])
    assert [g["use_muon"] for g in opt.param_groups] == [False, True] and sched is not None
    assert w.info["model"]["parameters"] == sum(p.numel() for p in model.parameters())
