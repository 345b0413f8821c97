"""Resuming from state_dict reproduces the uninterrupted lrs exactly.

A run is cut at several steps (mid-warmup included); the optimizer's and the
scheduler's state dicts go through torch.save / torch.load(weights_only=True)
into a fresh optimizer and scheduler, which finish the run.
"""

from __future__ import annotations

import io

import pytest
import torch

from descentlab import schedules

from .helpers import metric_series, optimizer, record

STEPS = 120
CASES = [
    ("warmup_cosine", dict(warmup_steps=20, total_steps=100, min_lr=1e-3)),
    ("cosine", dict(total_steps=100, warmup_steps=10, warmup_start_factor=0.1)),
    ("wsd", dict(warmup_steps=15, stable_steps=40, decay_steps=30, decay_type="1-sqrt")),
    ("one_cycle", dict(max_lr=0.5, total_steps=STEPS, three_phase=True)),
    ("cyclic", dict(base_lr=0.01, max_lr=0.1, step_size_up=7, mode="triangular2", warmup_steps=5)),
    ("step", dict(step_size=9, gamma=0.7, warmup_steps=12)),
    ("multistep", dict(milestones=[10, 30, 31], gamma=0.5)),
    ("exponential", dict(gamma=0.97, warmup_steps=3)),
    ("inverse_time", dict(decay=0.05)),
    ("polynomial", dict(total_steps=100, power=2.0, warmup_steps=25)),
    ("plateau", dict(patience=2, factor=0.5, cooldown=1, warmup_steps=10)),
]
CUTS = [1, 7, 25, 60, 101]


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _metrics(name):
    return metric_series(STEPS, seed=1) if name == "plateau" else None


@pytest.mark.parametrize(("name", "kw"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("cut", CUTS)
def test_resume_is_exact(name, kw, cut):
    lrs, metrics = (0.1, 0.02), _metrics(name)
    opt = optimizer(lrs)
    full = record(opt, schedules.create(name, opt, **kw), STEPS, metrics)

    opt = optimizer(lrs)
    sched = schedules.create(name, opt, **kw)
    first = record(opt, sched, cut, metrics)
    opt_state, sched_state = _roundtrip(opt.state_dict()), _roundtrip(sched.state_dict())

    opt = optimizer(lrs)
    sched = schedules.create(name, opt, **kw)
    opt.load_state_dict(opt_state)
    sched.load_state_dict(sched_state)
    rest = record(opt, sched, STEPS - cut, None if metrics is None else metrics[cut:])
    assert first[:-1] + rest == full


def test_loading_sets_the_optimizers_lr_without_its_state():
    opt = optimizer()
    sched = schedules.create("warmup_cosine", opt, warmup_steps=10, total_steps=50)
    record(opt, sched, 17)
    state = sched.state_dict()
    fresh_opt = optimizer()
    fresh = schedules.create("warmup_cosine", fresh_opt, warmup_steps=10, total_steps=50)
    fresh.load_state_dict(state)
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == fresh.lr
    assert fresh.last_epoch == 17


def test_load_restores_the_saved_settings():
    opt = optimizer()
    sched = schedules.create("cosine", opt, total_steps=40)
    record(opt, sched, 5)
    other = schedules.create("cosine", optimizer(), total_steps=1000)
    other.load_state_dict(sched.state_dict())
    assert other.schedule.settings["total_steps"] == 40
    assert other.get_last_lr() == sched.get_last_lr()


def test_state_dict_of_another_schedule_is_refused():
    state = schedules.create("cosine", optimizer(), total_steps=40).state_dict()
    with pytest.raises(ValueError, match="name='cosine'"):
        schedules.create("step", optimizer(), step_size=3).load_state_dict(state)


def test_state_dict_is_plain_data():
    state = schedules.create("plateau", optimizer(), patience=1).state_dict()
    assert _roundtrip(state) == state
