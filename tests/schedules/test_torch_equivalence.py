"""Where torch has the schedule, the lrs equal torch's for 1000 steps.

One line per case: our schedule and settings, torch's scheduler with the same
settings. Closed-form arithmetic that is the same as torch's (cyclic,
one_cycle, plateau) must be exactly equal; where torch updates recursively
(lr ← lr · factor) the values may differ by rounding, at most 1e-12 relative.
"""

from __future__ import annotations

import pytest
from torch.optim import lr_scheduler as L

from .helpers import N, metric_series, ours, rel_diff, theirs

EXACT, ROUNDING = 0.0, 1e-12


def group_lrs(opt):
    """Our default for cyclic's base_lr and one_cycle's max_lr: each group's own lr."""
    return [g["lr"] for g in opt.param_groups]


CASES = [
    # name, our kwargs, torch scheduler, tolerance
    ("step", dict(step_size=30), lambda o: L.StepLR(o, step_size=30), ROUNDING),
    ("step", dict(step_size=1, gamma=0.99), lambda o: L.StepLR(o, step_size=1, gamma=0.99), ROUNDING),
    ("step", dict(step_size=7, gamma=0.5), lambda o: L.StepLR(o, step_size=7, gamma=0.5), ROUNDING),
    ("step", dict(step_size=250, gamma=1.5), lambda o: L.StepLR(o, step_size=250, gamma=1.5), ROUNDING),
    ("multistep", dict(milestones=[100, 500, 900]), lambda o: L.MultiStepLR(o, [100, 500, 900]), ROUNDING),
    ("multistep", dict(milestones=[1, 2, 3, 999], gamma=0.5),
     lambda o: L.MultiStepLR(o, [1, 2, 3, 999], 0.5), ROUNDING),
    ("multistep", dict(milestones=[0, 10], gamma=0.3), lambda o: L.MultiStepLR(o, [0, 10], 0.3), ROUNDING),
    ("exponential", dict(gamma=0.99), lambda o: L.ExponentialLR(o, gamma=0.99), ROUNDING),
    ("exponential", dict(gamma=0.999), lambda o: L.ExponentialLR(o, gamma=0.999), ROUNDING),
    ("exponential", dict(gamma=1.002), lambda o: L.ExponentialLR(o, gamma=1.002), ROUNDING),
    ("cosine", dict(total_steps=1000), lambda o: L.CosineAnnealingLR(o, T_max=1000), ROUNDING),
    ("cosine", dict(total_steps=1500, min_lr=1e-3), lambda o: L.CosineAnnealingLR(o, 1500, 1e-3), ROUNDING),
    ("cosine", dict(total_steps=999, min_lr=0.05), lambda o: L.CosineAnnealingLR(o, 999, 0.05), ROUNDING),
    # past total_steps the cosine continues, as torch's
    ("cosine", dict(total_steps=100), lambda o: L.CosineAnnealingLR(o, T_max=100), ROUNDING),
    ("cosine", dict(total_steps=37, min_lr=1e-4), lambda o: L.CosineAnnealingLR(o, 37, 1e-4), ROUNDING),
    ("polynomial", dict(total_steps=1000), lambda o: L.PolynomialLR(o, total_iters=1000), ROUNDING),
    ("polynomial", dict(total_steps=500, power=2.0), lambda o: L.PolynomialLR(o, 500, 2.0), ROUNDING),
    ("polynomial", dict(total_steps=1500, power=0.5), lambda o: L.PolynomialLR(o, 1500, 0.5), ROUNDING),
    ("polynomial", dict(total_steps=37, power=0.9), lambda o: L.PolynomialLR(o, 37, 0.9), ROUNDING),
    ("cyclic", dict(base_lr=0.01, max_lr=0.1, step_size_up=50),
     lambda o: L.CyclicLR(o, 0.01, 0.1, step_size_up=50, cycle_momentum=False), EXACT),
    ("cyclic", dict(base_lr=0.001, max_lr=0.2, step_size_up=20, step_size_down=80, mode="triangular2"),
     lambda o: L.CyclicLR(o, 0.001, 0.2, 20, 80, mode="triangular2", cycle_momentum=False), EXACT),
    ("cyclic", dict(base_lr=0.01, max_lr=0.1, step_size_up=30, mode="exp_range", gamma=0.998),
     lambda o: L.CyclicLR(o, 0.01, 0.1, 30, mode="exp_range", gamma=0.998, cycle_momentum=False), EXACT),
    ("cyclic", dict(base_lr=0.02, max_lr=0.05, step_size_up=7, step_size_down=3, mode="exp_range", gamma=0.99),
     lambda o: L.CyclicLR(o, 0.02, 0.05, 7, 3, mode="exp_range", gamma=0.99, cycle_momentum=False), EXACT),
    ("cyclic", dict(max_lr=0.5, step_size_up=100, mode="triangular2"),  # base_lr: the optimizer's lr
     lambda o: L.CyclicLR(o, group_lrs(o), 0.5, 100, mode="triangular2", cycle_momentum=False), EXACT),
    ("one_cycle", dict(max_lr=0.3, total_steps=1000),
     lambda o: L.OneCycleLR(o, 0.3, total_steps=1000, cycle_momentum=False), EXACT),
    ("one_cycle", dict(max_lr=0.3, total_steps=1000, anneal_strategy="linear", pct_start=0.25),
     lambda o: L.OneCycleLR(o, 0.3, 1000, pct_start=0.25, anneal_strategy="linear", cycle_momentum=False), EXACT),
    ("one_cycle", dict(max_lr=1.0, total_steps=1200, three_phase=True, div_factor=10.0, final_div_factor=100.0),
     lambda o: L.OneCycleLR(o, 1.0, 1200, three_phase=True, div_factor=10.0, final_div_factor=100.0,
                            cycle_momentum=False), EXACT),
    ("one_cycle", dict(total_steps=1000, pct_start=0.1, three_phase=True, anneal_strategy="linear"),  # max_lr: the lr
     lambda o: L.OneCycleLR(o, group_lrs(o), 1000, pct_start=0.1, three_phase=True, anneal_strategy="linear",
                            cycle_momentum=False), EXACT),
    ("constant", {}, lambda o: L.ConstantLR(o, factor=1.0), EXACT),
]


def _ids(cases):
    return [f"{c[0]}-{i}" for i, c in enumerate(cases)]


@pytest.mark.parametrize(("name", "kw", "make", "tol"), CASES, ids=_ids(CASES))
def test_equals_torch(name, kw, make, tol):
    assert rel_diff(ours(name, **kw), theirs(make)) <= tol


@pytest.mark.parametrize(("name", "kw", "make", "tol"), CASES[::3], ids=_ids(CASES[::3]))
def test_equals_torch_with_two_param_groups(name, kw, make, tol):
    lrs = (0.1, 0.06)
    assert rel_diff(ours(name, lrs=lrs, **kw), theirs(make, lrs=lrs)) <= tol


PLATEAU = [
    dict(),
    dict(patience=5, factor=0.5),
    dict(patience=0, factor=0.3, cooldown=3, threshold=0.0),
    dict(patience=4, factor=0.5, threshold=0.01, threshold_mode="abs", min_lr=0.004),
    dict(patience=3, factor=0.7, cooldown=10, min_lr=0.002, eps=1e-4),
    dict(patience=2, factor=0.5, mode="max", threshold=1e-3),
    dict(patience=6, factor=0.1, mode="max", threshold=0.005, threshold_mode="abs", cooldown=2),
]


@pytest.mark.parametrize("kw", PLATEAU)
def test_plateau_equals_torch(kw):
    metrics = metric_series()
    if kw.get("mode") == "max":
        metrics = [-m for m in metrics]  # an accuracy-like metric: higher is better
    ours_lrs = ours("plateau", metrics=metrics, **kw)
    torch_lrs = theirs(lambda o: L.ReduceLROnPlateau(o, **kw), metrics=metrics)
    assert ours_lrs == torch_lrs
    assert len({lr[0] for lr in ours_lrs}) > 2, "the series should trigger several reductions"


def test_plateau_per_group_min_lr_equals_torch():
    metrics, lrs, kw = metric_series(), (0.1, 0.01), dict(patience=3, factor=0.5, min_lr=[1e-3, 5e-3])
    assert ours("plateau", lrs=lrs, metrics=metrics, **kw) == theirs(
        lambda o: L.ReduceLROnPlateau(o, **kw), lrs=lrs, metrics=metrics
    )


FIRST = {case[0]: case for case in reversed(CASES)}  # the first case of each schedule


@pytest.mark.parametrize(("name", "kw", "make", "tol"), [FIRST[n] for n in ("step", "cosine", "one_cycle")],
                         ids=["step", "cosine", "one_cycle"])
def test_equals_torch_on_a_descentlab_optimizer(name, kw, make, tol):
    assert rel_diff(ours(name, kind="adam", **kw), theirs(make)) <= tol


def test_the_cases_run_the_full_length():
    assert len(ours("constant")) == N + 1
