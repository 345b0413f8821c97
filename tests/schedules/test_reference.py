"""Any schedule by reference: a user's fn(step, total_steps) and torch's LRScheduler
classes, with the budget's total_steps filled in, exact resume from a weights_only
state, and one UsageError for each bad input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from descentlab import schedules

FILE = Path(__file__).parents[1] / "optim" / "user_optimizers.py"


def ref(name: str) -> str:
    return f"{FILE}:{name}"


def optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    w = torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([{"params": [w]}, {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr / 10}],
                           lr=lr, momentum=0.9)


def lrs(sched, opt, steps: int) -> list[list[float]]:
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_a_function_is_the_multiplier_of_each_groups_lr_over_the_budget():
    from tests.optim import user_optimizers as u

    kw = schedules.budget_defaults(ref("warm_linear"), 50, {"warm": 5})
    assert kw == {"warm": 5, "total_steps": 50}
    opt = optimizer()
    got = lrs(schedules.create(ref("warm_linear"), opt, **kw), opt, 50)
    expected = [[0.1 * u.warm_linear(t, 50, 5), 0.01 * u.warm_linear(t, 50, 5)] for t in range(50)]
    assert torch.allclose(torch.tensor(got, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                          rtol=1e-12, atol=0)


def test_torchs_onecycle_by_reference_is_torchs_onecycle_with_total_steps_from_the_budget():
    kw = schedules.budget_defaults("torch.optim.lr_scheduler:OneCycleLR", 40, {"max_lr": 0.5})
    assert kw == {"max_lr": 0.5, "total_steps": 40}
    a, b = optimizer(), optimizer()
    ours = lrs(schedules.create("torch.optim.lr_scheduler:OneCycleLR", a, **kw), a, 40)
    theirs = lrs(torch.optim.lr_scheduler.OneCycleLR(b, max_lr=0.5, total_steps=40), b, 40)
    assert ours == theirs
    # CosineAnnealingLR's T_max is the run's length too; LinearLR's total_iters (default 5) is left alone
    assert schedules.budget_defaults("torch.optim.lr_scheduler:CosineAnnealingLR", 40, {}) == {"T_max": 40}
    assert schedules.budget_defaults("torch.optim.lr_scheduler:LinearLR", 40, {}) == {}


@pytest.mark.parametrize("name, kw", [("warm_linear", {"warm": 3}),
                                      ("torch.optim.lr_scheduler:OneCycleLR", {"max_lr": 0.5})])
def test_a_state_saved_half_way_resumes_exactly_through_a_weights_only_load(name, kw):
    name = ref(name) if ":" not in name else name
    kw = schedules.budget_defaults(name, 30, kw)
    opt = optimizer()
    sched = schedules.create(name, opt, **kw)
    whole = lrs(sched, opt, 30)
    opt2 = optimizer()
    first = schedules.create(name, opt2, **kw)
    lrs(first, opt2, 12)
    buffer = io.BytesIO()
    torch.save({"opt": opt2.state_dict(), "sched": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt3 = optimizer()
    resumed = schedules.create(name, opt3, **kw)
    opt3.load_state_dict(state["opt"])
    resumed.load_state_dict(state["sched"])
    assert lrs(resumed, opt3, 18) == whole[12:]


@pytest.mark.parametrize("name, kw, message", [
    ("not_finite", {}, r"returned nan at step 0 \(total_steps=20\): expected a finite multiplier >= 0"),
    ("negative", {}, r"returned -1.0 at step 0"),
    ("one_argument", {}, r"takes 1 positional argument\(s\); expected fn\(step, total_steps\)"),
    ("warm_linear", {"wram": 3}, r"got unknown setting\(s\) \['wram'\]; it takes: warm"),
    ("HeavyBall", {}, r"is the class HeavyBall, which is not a torch.optim.lr_scheduler.LRScheduler subclass"),
    ("nope", {}, r"schedule file '.*user_optimizers.py' has no name 'nope'"),
    ("torch.optim.lr_scheduler:OneCycleLR", {}, r"needs the setting\(s\) \['max_lr'\]"),
    ("torch.optim.lr_scheduler:MultiStepLR", {"milestones": 5}, r"MultiStepLR raised on \(milestones=5\): TypeError"),
])
def test_a_bad_schedule_is_one_error_naming_it_when_it_is_built(name, kw, message):
    name = ref(name) if ":" not in name else name
    with pytest.raises(ValueError, match=message):
        schedules.create(name, optimizer(), **schedules.budget_defaults(name, 20, kw))
