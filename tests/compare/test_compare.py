"""`descentlab compare`: fairness, determinism, divergence and bad input."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest

from descentlab.cli import main
from descentlab.compare import from_file, from_names, time_to_target
from descentlab.errors import UsageError

FAST = ["--workload", "digits-mlp", "--steps", "40", "--eval-every", "10", "--quiet", "--jobs", "1"]
METRIC_COLUMNS = ("strategy", "seed", "final_metric", "best_metric", "steps_to_target", "status")


def read_csv(path):
    return list(csv.DictReader(path.open()))


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> tuple[Path, str]:
    """Two identical comparisons (sgd, adam; 2 seeds) in ``a`` and ``b``, and what the first printed."""
    root = tmp_path_factory.mktemp("twins")
    printed = []
    for name in ("a", "b"):
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            assert main(["compare", *FAST, "--optimizers", "sgd,adam", "--seeds", "2", "--target", "0.5",
                         "--out", str(root / name)]) == 0
        printed.append(stdout.getvalue())
    return root, printed[0]


def test_two_identical_comparisons_give_identical_metric_columns(twins):
    root, _ = twins
    a, b = read_csv(root / "a" / "summary.csv"), read_csv(root / "b" / "summary.csv")
    assert len(a) == 4 and [(r["strategy"], r["seed"]) for r in a] == [("sgd", "0"), ("adam", "0"), ("sgd", "1"), ("adam", "1")]
    for ra, rb in zip(a, b):
        assert {k: ra[k] for k in METRIC_COLUMNS} == {k: rb[k] for k in METRIC_COLUMNS}
    assert a[0]["final_metric"] != a[2]["final_metric"], "another seed should give another run"


def test_outputs_and_report(twins):
    # the first of the twins (this test ran a comparison of its own before: momentum and adamw, one seed)
    root, printed = twins
    out = root / "a"
    assert f"report: {out}/report.html" in printed
    html = (out / "report.html").read_text()
    assert "sgd" in html and "adam" in html and "data:image/png;base64" in html
    assert list(out.glob("*.png"))
    rows = read_csv(out / "summary.csv")
    assert set(rows[0]) >= {"strategy", "seed", "final_metric", "best_metric", "steps_to_target",
                            "seconds_to_target", "wall_seconds"}
    # `descentlab report DIR` renders again from the database alone
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()


def test_a_diverging_strategy_is_reported_and_the_comparison_goes_on(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("strategies:\n  - {name: blowup, optimizer: sgd, lr: 1.0e+6}\n  - {optimizer: adam}\n")
    out = tmp_path / "cmp"
    assert main(["compare", *FAST, "--strategies", str(spec), "--target", "0.5", "--out", str(out)]) == 0
    rows = {r["strategy"]: r for r in read_csv(out / "summary.csv")}
    assert rows["blowup"]["status"] == "diverged" and rows["blowup"]["steps_to_target"] == "inf"
    assert rows["adam"]["status"] == "finished" and float(rows["adam"]["best_metric"]) > 0.5
    assert "diverged" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--optimizers", "adam,lionn,sgd"], "strategy 'lionn': unknown optimizer 'lionn'; did you mean 'lion'"),
        (["--optimizers", ""], "expected a comma-separated list"),
        (["--optimizers", "adam,,sgd"], "expected a comma-separated list"),
        (["--optimizers", "adam,adam"], "listed twice"),
        (["--optimizers", "adam", "--seeds", "0"], "invalid seeds=0"),
        (["--optimizers", "adam", "--target", "1.5"], "target 1.5 is outside the range of accuracy"),
        (["--optimizers", "adam", "--steps", "0"], "invalid steps=0"),
        (["--optimizers", "adam", "--schedule", "cosin"], "did you mean 'cosine'"),
        (["--strategies", "missing.yaml"], "cannot read config file"),
        (["--strategies", "bad.yaml"], "strategy 'x': invalid betas"),
        (["--strategies", "unknown.yaml"], "unknown key(s) ['learning_rate']"),
        (["--optimizers", "adam", "--strategies", "bad.yaml"], "not both"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_runs_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("- {name: x, optimizer: adam, opt: {betas: [1.5, 0.9]}}\n")
    (tmp_path / "unknown.yaml").write_text("- {optimizer: adam, learning_rate: 0.1}\n")
    out = tmp_path / "out"
    assert main(["compare", "--workload", "digits-mlp", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists(), "nothing may run or be written"


def test_an_existing_comparison_is_not_overwritten_by_accident(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *FAST, "--optimizers", "sgd", "--out", str(out)]) == 0
    assert main(["compare", *FAST, "--optimizers", "adam", "--out", str(out)]) == 2
    assert "was started with strategies sgd, not adam" in capsys.readouterr().err
    assert [r["strategy"] for r in read_csv(out / "summary.csv")] == ["sgd"], "nothing overwritten"
    assert main(["compare", *FAST, "--optimizers", "adam", "--out", str(out), "--overwrite"]) == 0
    assert [r["strategy"] for r in read_csv(out / "summary.csv")] == ["adam"]


def test_time_to_target_is_the_first_evaluation_that_reaches_it():
    rows = [{"step": 10, "seconds": 1.0, "val_acc": 0.5}, {"step": 15, "seconds": 1.4, "train_loss": 0.1},
            {"step": 20, "seconds": 2.0, "val_acc": 0.91}, {"step": 30, "seconds": 3.0, "val_acc": 0.95}]
    assert time_to_target(rows, "val_acc", 0.9, "max") == (20, 2.0)
    assert time_to_target(rows, "val_acc", 0.99, "max") == (None, None)
    assert time_to_target(rows, "val_acc", 0.6, "min") == (10, 1.0)
    assert time_to_target(rows, "val_acc", None, "max") == (None, None)


def test_strategies_from_names_and_file(tmp_path):
    assert [s.label for s in from_names("SGD, adamw")] == ["sgd", "adamw"]
    f = tmp_path / "s.yaml"
    f.write_text("- {optimizer: adam, lr: 0.01, schedule: cosine, sched: {min_lr: 0.001}, clip_norm: 1.0}\n")
    (s,) = from_file(f)
    assert (s.label, s.lr, s.schedule, s.schedule_kwargs, s.clip_norm) == ("adam", 0.01, "cosine", {"min_lr": 0.001}, 1.0)
    with pytest.raises(UsageError, match="no optimizer given"):
        f.write_text("- {lr: 0.1}\n")
        from_file(f)


def test_a_strategy_file_can_give_param_groups_by_module_and_name(tmp_path):
    """groups: rules of optim.param_groups from YAML (module class names, name patterns)."""
    from descentlab.compare import from_file
    from descentlab.compare.runner import _build
    from descentlab import workloads

    path = tmp_path / "s.yaml"
    path.write_text("strategies:\n  - name: muon-split\n    optimizer: muon\n    lr: 0.02\n"
                    "    groups:\n      - {modules: [Embedding], names: ['lm_head.*'], ndim: [1], use_muon: false}\n"
                    "      - {ndim: 2, use_muon: true}\n")
    (strategy,) = from_file(path)
    wl = workloads.charlm.build(0, model={"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8}, corpus_chars=4000)
    model, opt, _ = _build(wl, strategy, 0, 10)
    names = {id(p): n for n, p in model.named_parameters()}
    adamw = [names[id(p)] for g in opt.param_groups if not g["use_muon"] for p in g["params"]]
    assert {"wte.weight", "wpe.weight", "lm_head.weight"} <= set(adamw)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {optimizer: adamw, groups: [{lr: 0.1}]}\n")
    with pytest.raises(ValueError, match="selects nothing"):
        from_file(bad)


def test_a_strategy_file_can_put_diloco_around_an_optimizer(tmp_path, capsys):
    """diloco: {sync_every, outer_lr, outer_momentum}: DiLoCo around the named optimizer (one process per run)."""
    from descentlab.distributed.diloco import DiLoCo

    path = tmp_path / "s.yaml"
    path.write_text("- {optimizer: adamw}\n- {name: adamw-diloco, optimizer: adamw, diloco: {sync_every: 10}}\n")
    out = tmp_path / "cmp"
    linreg = ["--workload", "linreg", "--steps", "40", "--eval-every", "10", "--quiet", "--jobs", "1"]
    assert main(["compare", *linreg, "--strategies", str(path), "--out", str(out)]) == 0
    rows = {r["strategy"]: r for r in read_csv(out / "summary.csv")}
    assert set(rows) == {"adamw", "adamw-diloco"} and all(r["status"] == "finished" for r in rows.values())
    assert rows["adamw"]["final_metric"] != rows["adamw-diloco"]["final_metric"]  # the outer step changed the run
    (plain, diloco) = from_file(path)
    assert diloco.diloco == {"sync_every": 10, "outer_lr": 0.7, "outer_momentum": 0.9} and plain.diloco is None
    from descentlab import workloads
    from descentlab.compare.runner import _build

    _, opt, _ = _build(workloads.load("digits-mlp"), diloco, 0, 40)
    assert isinstance(opt, DiLoCo) and opt.sync_every == 10
    bad = tmp_path / "bad.yaml"
    for text, words in (("- {optimizer: adamw, diloco: {every: 3}}\n", "invalid diloco={'every': 3}"),
                        ("- {optimizer: adamw, diloco: {sync_every: 0}}\n", "invalid sync_every=0")):
        bad.write_text(text)
        capsys.readouterr()
        assert main(["compare", *FAST, "--strategies", str(bad), "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert words in err and err.strip().count("\n") == 0
