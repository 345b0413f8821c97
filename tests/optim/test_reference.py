"""Any optimizer by reference, class, factory or entry point: optim.create builds the
user's optimizer as its own constructor would, descentlab's extras work on it, and
every bad input is one UsageError naming it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from descentlab import optim
from descentlab.cli import main
from descentlab.errors import UsageError
from descentlab.experiment.build import LR_CLASS, initial_lr
from descentlab.workloads import load

FILE = Path(__file__).with_name("user_optimizers.py")


def ref(name: str) -> str:
    return f"{FILE}:{name}"


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def run(make, steps: int = 30) -> list[torch.Tensor]:
    """Parameters after ``steps`` steps on a fixed regression problem."""
    net = model()
    opt = make(net)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=g), torch.randn(64, 2, generator=g)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor], tol: float = 0.0) -> bool:
    return all(float((x - y).abs().max()) <= tol * float(x.abs().max().clamp_min(1e-30)) for x, y in zip(a, b))


@pytest.mark.parametrize("given", ["torch.optim:AdamW", torch.optim.AdamW, ref("adamw_factory")])
def test_a_reference_a_class_and_a_factory_build_torchs_adamw(given):
    theirs = run(lambda m: torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.1))
    ours = run(lambda m: optim.create(given, m.parameters(), lr=3e-3, weight_decay=0.1))
    assert same(theirs, ours)
    # and descentlab's own adamw is the same rule (float rounding)
    assert same(theirs, run(lambda m: optim.create("adamw", m.parameters(), lr=3e-3, weight_decay=0.1)), 1e-5)


def test_a_users_file_class_trains_and_resumes_from_its_state_dict():
    a = run(lambda m: optim.create(ref("HeavyBall"), m.parameters(), lr=0.05), steps=20)
    torch_sgd = run(lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), steps=20)
    assert same(a, torch_sgd, 1e-6)  # heavy ball is torch's SGD momentum (dampening 0)
    spec = optim.get(ref("HeavyBall"))
    assert spec.kind == "class" and spec.default_lr == 0.05 and spec.name == f"{FILE.resolve()}:HeavyBall"


def test_l1_l2_and_decoupled_decay_work_on_any_optimizer_and_exclusion_is_per_group():
    # coupled L2 through the hook equals torch's own coupled weight_decay
    hooked = run(lambda m: optim.create("torch.optim:SGD", m.parameters(), lr=0.05, momentum=0.9, l2=0.1))
    own = run(lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1))
    assert same(hooked, own, 1e-6)
    # decoupled decay through the hook equals torch's AdamW decay on Adam
    hooked = run(lambda m: optim.create("torch.optim:Adam", m.parameters(), lr=1e-2, decoupled_decay=0.1))
    own = run(lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1))
    assert same(hooked, own, 1e-6)
    # L1 equals descentlab's sgd with l1; exclude_from_decay="auto" leaves the biases alone
    for kw in ({"l1": 0.01}, {"l1": 0.01, "exclude_from_decay": "auto"}):
        hooked = run(lambda m: optim.create("torch.optim:SGD", m.parameters(), lr=0.05, **kw))
        named = run(lambda m: optim.create("sgd", m.parameters(), lr=0.05, **kw))
        assert same(hooked, named, 1e-6), kw
    with_bias = run(lambda m: optim.create("torch.optim:SGD", m.parameters(), lr=0.05, l1=0.01))
    assert not same(with_bias, hooked)


def test_the_lr_comes_from_the_class_default_where_nothing_else_gives_one():
    wl = load("linreg")
    assert initial_lr(wl, "torch.optim:Adagrad") == (0.01, LR_CLASS)
    assert initial_lr(wl, "adagrad")[1] == "the workload's default"
    with pytest.raises(UsageError, match=r"no lr for optimizer user_optimizers.py:NoDefaultLr: .*give --lr"):
        initial_lr(wl, ref("NoDefaultLr"))
    assert initial_lr(wl, ref("NoDefaultLr"), 0.3) == (0.3, "given")


@pytest.mark.parametrize("given, message", [
    (str(FILE.with_name("missing.py")) + ":Opt", r"optimizer file '.*missing.py' does not exist"),
    (ref("Nope"), r"optimizer file '.*user_optimizers.py' has no name 'Nope' \(it defines: .*HeavyBall"),
    ("torch.optim:Adamw", r"has no name 'Adamw'; did you mean 'AdamW'"),
    ("no_such_package_xyz:Opt", r"optimizer module 'no_such_package_xyz' not found"),
    (ref("NotAnOptimizer"), r"is the class NotAnOptimizer, which is not a torch.optim.Optimizer subclass"),
    (ref("LEARNING_RATE"), r"is a float, not a torch.optim.Optimizer subclass or a factory"),
    ("adamm", r"unknown optimizer 'adamm'; did you mean 'adam'"),
])
def test_a_reference_that_names_no_optimizer_is_one_usage_error(given, message):
    with pytest.raises(ValueError, match=message):  # UsageError, or the registry's ValueError for a name
        optim.create(given, model().parameters(), lr=0.1)


def test_a_factory_that_returns_something_else_or_a_constructor_that_raises_is_named():
    params = list(model().parameters())
    with pytest.raises(UsageError, match=r"factory user_optimizers.py:returns_a_number returned int, expected a "
                                         r"torch.optim.Optimizer"):
        optim.create(ref("returns_a_number"), params, lr=0.1)
    with pytest.raises(UsageError, match=r"HeavyBall rejected momentum=1.5: ValueError: momentum must be in \[0, 1\)"
                                         r".*\(it accepts: lr, momentum\)"):
        optim.create(ref("HeavyBall"), params, lr=0.1, momentum=1.5)
    with pytest.raises(UsageError, match=r"HeavyBall got unknown hyperparameter\(s\) \['betas'\]; it accepts: lr, "
                                         r"momentum"):
        optim.create(ref("HeavyBall"), params, lr=0.1, betas=(0.9, 0.99))


def test_an_object_defined_here_is_held_in_this_process_and_refused_elsewhere():
    class Local(torch.optim.SGD):
        pass

    name = optim.canonical(Local)
    assert name.startswith("python:") and optim.get(name).target is Local
    with pytest.raises(UsageError, match="was a Python object in another process"):
        optim.get("python:SomethingElse")


def test_an_installed_packages_entry_point_adds_an_optimizer_and_a_schedule(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    (site / "signplugin").mkdir(parents=True)
    (site / "signplugin" / "__init__.py").write_text(textwrap.dedent('''
        import torch

        def sign_sgd(params, lr=0.01):
            """signSGD from an installed plugin."""
            class Sign(torch.optim.SGD):
                @torch.no_grad()
                def step(self, closure=None):
                    for g in self.param_groups:
                        for p in g["params"]:
                            if p.grad is not None:
                                p.add_(p.grad.sign(), alpha=-g["lr"])
            return Sign(params, lr=lr)

        def halve(step, total_steps):
            """Half the lr in the second half."""
            return 1.0 if step < total_steps // 2 else 0.5
    '''))
    info = site / "signplugin-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: signplugin\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[descentlab.optimizers]\nsign-sgd = signplugin:sign_sgd\n\n"
                                           "[descentlab.schedules]\nhalve = signplugin:halve\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["list", "optimizers"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("sign-sgd"))
    assert "signSGD from an installed plugin." in line and "signplugin" in line
    out = tmp_path / "run"
    assert main(["train", "--workload", "linreg", "--optimizer", "sign-sgd", "--schedule", "halve", "--steps", "40",
                 "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizer"] == "sign-sgd" and summary["lr_source"] == LR_CLASS
    assert summary["optimizer_source"]["package"] == "signplugin" and summary["optimizer_source"]["version"] == "2.0"
    assert summary["schedule"] == "halve" and summary["schedule_source"]["entry_point"].startswith("descentlab.sched")
