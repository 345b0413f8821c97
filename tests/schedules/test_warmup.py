"""Warmup composes with every schedule: a linear ramp, then the schedule shifted.

With ``warmup_steps=W``: for t < W, lr_t = f(0) · (s + (1 − s) · t / W) where f
is the schedule without warmup and s = warmup_start_factor; for t >= W,
lr_t = f(t − W), where a ``total_steps`` argument still counts the whole run
(f runs for total_steps − W steps).
"""

from __future__ import annotations

import math

import pytest

from descentlab import schedules

from .helpers import metric_series, ours

W, STEPS, LR = 20, 300, 0.1
COMPOSED = [
    ("step", dict(step_size=30, gamma=0.5)),
    ("multistep", dict(milestones=[50, 120], gamma=0.3)),
    ("exponential", dict(gamma=0.99)),
    ("inverse_time", dict(decay=0.01)),
    ("cyclic", dict(max_lr=0.3, step_size_up=25)),  # base_lr: the lr
    ("constant", {}),
]
HORIZON = [
    ("cosine", dict(total_steps=250, min_lr=1e-3)),
    ("polynomial", dict(total_steps=250, power=2.0)),
    ("one_cycle", dict(total_steps=250, max_lr=0.4)),
]


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-15, abs_tol=1e-18)


@pytest.mark.parametrize("start", [0.0, 0.25])
@pytest.mark.parametrize(("name", "kw"), COMPOSED + HORIZON, ids=[c[0] for c in COMPOSED + HORIZON])
def test_warmup_then_shifted_schedule(name, kw, start):
    plain_kw = dict(kw)
    if "total_steps" in kw:
        plain_kw["total_steps"] = kw["total_steps"] - W  # the schedule proper gets what the warmup leaves
    plain = schedules.lr_curve(name, STEPS, base_lr=LR, **plain_kw)
    warm = schedules.lr_curve(name, STEPS, base_lr=LR, warmup_steps=W, warmup_start_factor=start, **kw)
    for t in range(W):
        assert _close(warm[t], plain[0] * (start + (1 - start) * t / W)), t
    assert warm[W:] == plain[: STEPS - W]


@pytest.mark.parametrize(("name", "kw"), [("step", dict(step_size=30)), ("cosine", dict(total_steps=100)),
                                          ("exponential", dict(gamma=0.95))])
def test_warmup_in_the_scheduler(name, kw):
    lrs = [row[0] for row in ours(name, 150, warmup_steps=W, **kw)]
    assert lrs[0] == 0.0
    assert lrs[W // 2] == pytest.approx(LR / 2, rel=1e-15)
    assert lrs[W] == LR  # the schedule starts at its first value when the warmup ends
    assert max(lrs) == LR
    assert lrs == schedules.lr_curve(name, 151, base_lr=LR, warmup_steps=W, **kw)


def test_step_decays_counted_from_the_end_of_warmup():
    lrs = schedules.lr_curve("step", 100, base_lr=1.0, warmup_steps=10, step_size=30, gamma=0.5)
    assert lrs[39] == 1.0 and lrs[40] == 0.5 and lrs[70] == 0.25


def test_cosine_with_warmup_reaches_min_lr_at_total_steps():
    lrs = schedules.lr_curve("cosine", 101, base_lr=LR, warmup_steps=10, total_steps=100, min_lr=1e-3)
    assert lrs[10] == LR and lrs[100] == pytest.approx(1e-3, rel=1e-12)
    assert all(b < a for a, b in zip(lrs[10:100], lrs[11:101]))


def test_warmup_cosine_is_cosine_with_warmup():
    kw = dict(warmup_steps=30, total_steps=200, min_lr=1e-4)
    assert schedules.lr_curve("warmup_cosine", 200, **kw) == schedules.lr_curve("cosine", 200, **kw)
    assert [r[0] for r in ours("warmup_cosine", 200, **kw)] == schedules.lr_curve("cosine", 201, **kw)


def test_plateau_ignores_metrics_during_warmup():
    metrics = [1.0] * 60  # never improves: with patience 2, a reduction every 3 steps after the first
    lrs = [r[0] for r in ours("plateau", 60, metrics=metrics, warmup_steps=10, patience=2, factor=0.5)]
    assert lrs[:11] == pytest.approx([LR * t / 10 for t in range(10)] + [LR], rel=1e-15)
    assert lrs[11:15] == [LR, LR, LR, LR / 2]  # first metric at step 11 sets the best; 3 bad ones later, halved


def test_plateau_lr_curve_matches_the_scheduler():
    metrics = metric_series(400)
    kw = dict(patience=3, factor=0.5, warmup_steps=7, warmup_start_factor=0.1)
    lrs = [r[0] for r in ours("plateau", 399, metrics=metrics, **kw)]
    assert lrs == schedules.lr_curve("plateau", 400, metrics=metrics, **kw)
