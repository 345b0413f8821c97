"""Formulas without a torch counterpart, param groups, the scheduler's API."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from descentlab import schedules

from .helpers import metric_series, optimizer, ours, record

# one setting of every schedule, for the tests that run them all
EVERY = {
    "constant": {},
    "step": dict(step_size=10, gamma=0.5),
    "multistep": dict(milestones=[5, 20], gamma=0.2),
    "exponential": dict(gamma=0.97),
    "inverse_time": dict(decay=0.1),
    "cosine": dict(total_steps=40, min_lr=1e-3),
    "warmup_cosine": dict(warmup_steps=5, total_steps=40, min_lr=1e-3),
    "cyclic": dict(max_lr=0.5, step_size_up=4, step_size_down=6, mode="exp_range", gamma=0.99),
    "one_cycle": dict(total_steps=50, pct_start=0.2),
    "polynomial": dict(total_steps=30, power=1.5),
    "wsd": dict(warmup_steps=5, stable_steps=10, decay_steps=20, min_lr=1e-3, decay_type="cosine"),
    "plateau": dict(patience=1, factor=0.5),
}
METRICS = metric_series(60)


def test_every_schedule_is_covered():
    assert sorted(EVERY) == sorted(schedules.available())


def test_inverse_time_formula():
    lrs = schedules.lr_curve("inverse_time", 500, base_lr=0.3, decay=0.02)
    assert lrs == [0.3 / (1 + 0.02 * t) for t in range(500)]


@pytest.mark.parametrize(("decay_type", "shape"), [
    ("linear", lambda p: 1 - p),
    ("cosine", lambda p: (1 + math.cos(math.pi * p)) / 2),
    ("1-sqrt", lambda p: 1 - math.sqrt(p)),
])
def test_wsd_has_three_phases(decay_type, shape):
    w, s, d, lr, low = 10, 30, 20, 0.2, 0.002
    lrs = schedules.lr_curve("wsd", 80, base_lr=lr, warmup_steps=w, stable_steps=s, decay_steps=d,
                             min_lr=low, decay_type=decay_type)
    assert lrs[:w] == pytest.approx([lr * t / w for t in range(w)], rel=1e-15)  # warmup
    assert lrs[w:w + s] == [lr] * s  # stable
    decay = [low + (lr - low) * shape(k / d) for k in range(d + 1)]
    assert lrs[w + s:w + s + d + 1] == pytest.approx(decay, rel=1e-15)  # decay, to min_lr at w + s + d
    assert all(b < a for a, b in zip(lrs[w + s:w + s + d], lrs[w + s + 1:w + s + d + 1]))
    assert lrs[w + s + d:] == [pytest.approx(low, rel=1e-15)] * (80 - w - s - d)


def test_constant():
    assert schedules.lr_curve("constant", 5, base_lr=0.7) == [0.7] * 5


@pytest.mark.parametrize("name", sorted(EVERY))
def test_lr_curve_equals_the_scheduler(name):
    metrics = METRICS if name == "plateau" else None
    lrs = [row[0] for row in ours(name, 59, metrics=metrics, **EVERY[name])]
    assert lrs == schedules.lr_curve(name, 60, base_lr=0.1, metrics=metrics, **EVERY[name])


# schedules whose settings are all relative to the group's lr (no absolute lr argument)
RELATIVE = ["constant", "step", "multistep", "exponential", "inverse_time", "cyclic", "one_cycle", "polynomial",
            "plateau"]


@pytest.mark.parametrize("name", RELATIVE + ["cosine", "warmup_cosine", "wsd"])
def test_two_param_groups_are_scheduled_proportionally(name):
    kw = dict(EVERY[name])
    if "min_lr" in kw:
        kw["min_lr"] = 0.0
    if name == "cyclic":
        kw["max_lr"] = [0.5, 0.05]  # absolute, as torch's: one per group keeps them proportional
    metrics = METRICS if name == "plateau" else None
    for big, small in ours(name, 59, lrs=(0.1, 0.01), metrics=metrics, **kw):
        assert small == pytest.approx(big / 10, rel=1e-14, abs=1e-300)


def test_absolute_min_lr_is_per_group_or_shared():
    rows = ours("cosine", 40, lrs=(0.1, 0.01), total_steps=40, min_lr=[1e-3, 1e-4])
    assert rows[-1] == pytest.approx([1e-3, 1e-4], rel=1e-12)
    rows = ours("cosine", 40, lrs=(0.1, 0.01), total_steps=40, min_lr=1e-3)
    assert rows[-1] == pytest.approx([1e-3, 1e-3], rel=1e-12)


@pytest.mark.parametrize("name", sorted(EVERY))
def test_works_with_a_descentlab_optimizer(name):
    metrics = METRICS if name == "plateau" else None
    sgd = ours(name, 59, metrics=metrics, **EVERY[name])
    adam = ours(name, 59, kind="adam", metrics=metrics, **EVERY[name])
    assert adam == sgd


def test_drives_a_descentlab_optimizer_in_training():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    from descentlab import optim

    opt = optim.create("adam", model.parameters(), lr=0.01)
    sched = schedules.create("warmup_cosine", opt, warmup_steps=3, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    assert seen == schedules.lr_curve("warmup_cosine", 10, base_lr=0.01, warmup_steps=3, total_steps=10)


def test_scheduler_api():
    opt = optimizer((0.1, 0.05))
    sched = schedules.create("step", opt, step_size=2, gamma=0.5)
    assert isinstance(sched, LRScheduler) and not isinstance(sched, ReduceLROnPlateau)
    assert sched.lr == 0.1 and sched.get_last_lr() == [0.1, 0.05] and sched.last_epoch == 0
    assert sched.base_lrs == [0.1, 0.05]
    record(opt, sched, 2)
    assert sched.lr == 0.05 and sched.get_last_lr() == [0.05, 0.025] == [g["lr"] for g in opt.param_groups]
    assert sched.get_lr() == sched.get_last_lr()  # pure: reading does not step
    assert sched.last_epoch == 2 and "step" in repr(sched)


def test_plateau_is_a_reduce_on_plateau_for_lightning_and_hf():
    sched = schedules.create("plateau", optimizer())
    assert isinstance(sched, ReduceLROnPlateau) and isinstance(sched, LRScheduler)
    sched.step(1.0)
    sched.step(metrics=torch.tensor(0.5))  # torch's keyword, a 0-dim tensor
    assert sched.lr == 0.1


def test_plateau_needs_a_metric_and_the_others_take_none():
    with pytest.raises(ValueError, match="plateau.*metric"):
        schedules.create("plateau", optimizer()).step()
    with pytest.raises(ValueError, match="'cosine' takes no metric"):
        schedules.create("cosine", optimizer(), total_steps=10).step(0.3)


def test_tensor_lr_is_updated_in_place():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=torch.tensor(0.1))
    lr_tensor = opt.param_groups[0]["lr"]
    sched = schedules.create("exponential", opt, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr_tensor and float(lr_tensor) == pytest.approx(0.05)


def test_last_epoch_resumes_a_pure_schedule():
    opt = optimizer()
    sched = schedules.create("cosine", opt, total_steps=50)
    record(opt, sched, 20)
    again = schedules.Scheduler(opt, schedules.resolve("cosine", dict(total_steps=50)), last_epoch=19)
    assert again.last_epoch == 20 and again.get_last_lr() == sched.get_last_lr()


def test_names_are_normalised_and_aliased():
    assert schedules.get("Warmup-Cosine").name == "warmup_cosine"
    assert schedules.get("onecycle").name == "one_cycle"
    assert schedules.get("reduce_lr_on_plateau").name == "plateau"


def test_composes_with_torch_sequential_lr():
    opt = optimizer()
    first = schedules.create("constant", opt)
    second = schedules.create("cosine", opt, total_steps=30)
    seq = torch.optim.lr_scheduler.SequentialLR(opt, [first, second], milestones=[10])
    lrs = [row[0] for row in record(opt, seq, 39)]
    assert lrs == [0.1] * 10 + schedules.lr_curve("cosine", 30, base_lr=0.1, total_steps=30)
