"""Suites, held-out variants and search spaces: what the files say, and what is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descentlab.benchmark import space, suites, variants
from descentlab.errors import UsageError


def test_the_built_in_suites_have_targets_budgets_and_a_variant_each():
    small, full = suites.load("small"), suites.load("full")
    assert [e.name for e in small.entries] == ["linreg", "diabetes", "digits-mlp", "digits-cnn", "mnist1d-mlp"]
    assert [e.name for e in full.entries][:5] == [e.name for e in small.entries]
    assert {"mnist1d-cnn", "charlm"} <= {e.name for e in full.entries}
    for e in full.entries:
        assert e.variant is not None and e.variant.changes
        for part in (e.base, e.variant):
            assert part.target is not None and part.budget_steps >= 10
    assert {e.name: e.to_dict() for e in small.entries} == {e.name: e.to_dict() for e in full.entries[:5]}


def test_an_activation_variant_replaces_every_activation_module_and_nothing_else():
    from descentlab import workloads

    base = workloads.load("digits-mlp")
    var = variants.build("digits-mlp", {"activation": "tanh"})
    torch.manual_seed(0)
    a = base.make_model()
    torch.manual_seed(0)
    b = var.make_model()
    kinds = lambda m: [type(x).__name__ for x in m.modules() if not list(x.children())]  # noqa: E731
    assert "ReLU" in kinds(a) and "ReLU" not in kinds(b) and "Tanh" in kinds(b)
    assert len(kinds(a)) == len(kinds(b))
    for p, q in zip(a.parameters(), b.parameters()):  # the same initialisation
        assert torch.equal(p, q)
    assert var.name == "digits-mlp (activation tanh)" and var.metric == base.metric


def test_a_data_seed_variant_draws_other_data():
    from descentlab import workloads

    base, var = workloads.load("linreg"), variants.build("linreg", {"data_seed": 1})
    assert not torch.equal(base.train[0], var.train[0])


def test_an_activation_variant_of_a_model_without_activations_is_refused():
    with pytest.raises(UsageError, match="no activation module to replace"):
        variants.build("linreg", {"activation": "gelu"})


def test_swap_activations_counts_nested_modules():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sequential(nn.Linear(2, 2), nn.GELU()))
    assert variants.swap_activations(model, "silu") == 2
    assert [type(m).__name__ for m in model.modules()].count("SiLU") == 2


def test_a_suite_file_resolves_a_workload_file_beside_it(tmp_path):
    from tests import user_workload_file

    source = user_workload_file.write(tmp_path)
    (tmp_path / "s.yaml").write_text(f"workloads:\n  - workload: {source.name}:tensors\n    target: auto\n"
                                     "    budget_steps: 50\n")
    suite = suites.load(str(tmp_path / "s.yaml"))
    (e,) = suite.entries
    assert e.name == "tensors" and e.base.workload == f"{source}:tensors"
    assert e.base.target is None and e.base.budget_steps == 50 and e.variant is None


@pytest.mark.parametrize("text,message", [
    ("workloads: []", "expected a non-empty list of workloads"),
    ("workloads:\n  - {workload: linreg, target: 0.5, budget_steps: 0}", "invalid budget_steps 0"),
    ("workloads:\n  - {workload: linreg, target: 0.5, budget_steps: auto}", "budget_steps auto needs target auto"),
    ("workloads:\n  - {workload: linreg, target: high, budget_steps: 5}", "invalid target 'high'"),
    ("workloads:\n  - {workload: linreg, target: 0.5, budget_steps: 5, epochs: 3}", "unknown key(s) ['epochs']"),
    ("workloads:\n  - {workload: linreg, target: 0.5, budget_steps: 5}\n  - {workload: linreg, target: 0.6, "
     "budget_steps: 5}", "'linreg' is listed twice"),
    ("workloads:\n  - {workload: linreg, target: 0.5, budget_steps: 5, variant: {activation: swish, target: 0.5, "
     "budget_steps: 5}}", "invalid activation 'swish'"),
    ("workloads:\n  - {workload: linreg, target: 0.5, budget_steps: 5, variant: {data_seed: 1, target: 0.5}}",
     "variant: no budget_steps given"),
])
def test_bad_suite_files_name_the_workload_and_the_value(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UsageError) as err:
        suites.load(str(tmp_path / "bad.yaml"))
    assert message in str(err.value)


def test_workloads_take_the_suite_targets_for_built_ins_and_auto_for_the_rest():
    suite = suites.from_workloads("digits-mlp,mnist1d-cnn,diabetes")
    small = {e.name: e for e in suites.load("full").entries}
    assert [e.name for e in suite.entries] == ["digits-mlp", "mnist1d-cnn", "diabetes"]
    assert suite.entries[1] == small["mnist1d-cnn"]
    own = suites.from_workloads("mnist-cnn")
    assert own.entries[0].base.target is None and own.entries[0].variant is None


def test_search_spaces_are_checked_and_their_trials_are_quasi_random_and_reproducible():
    s = space.check({"lr": {"factor": 10}, "momentum": {"low": 0.8, "high": 0.99, "log": False},
                     "betas": [[0.9, 0.999], [0.95, 0.98]]}, "strategy 'x'")
    a, b = space.trials(s, 8, study=0), space.trials(s, 8, study=1)
    assert a == space.trials(s, 8, study=0) and a != b
    factors = sorted(p["lr"]["factor"] for p in a)
    assert 0.1 <= factors[0] and factors[-1] <= 10
    # Sobol: 8 points fill the 8 equal bins of log(factor) once each
    import math

    bins = sorted(int((math.log10(f) + 1) / 2 * 8) for f in factors)
    assert bins == list(range(8))
    assert all(0.8 <= p["momentum"] <= 0.99 and p["betas"] in ([0.9, 0.999], [0.95, 0.98]) for p in a)
    assert space.hparams(a[0], 0.01) == (pytest.approx(0.01 * a[0]["lr"]["factor"]),
                                         {"momentum": a[0]["momentum"], "betas": a[0]["betas"]})
    for bad, message in (({"lr": {"factor": 1}}, "factor: F} with F > 1"), ({"eps": {"low": 0, "high": 1}}, "low < high"),
                         ({"eps": 3}, "invalid space eps 3")):
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
            space.check(bad, "strategy 'x'")
