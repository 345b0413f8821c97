"""The benchmark score and profile on hand-made times, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from descentlab.benchmark import benchmark_score, counted, profile, ratios, speedup

TIMES = {"a": {"w1": 10.0, "w2": 20.0, "w3": None},
         "b": {"w1": 20.0, "w2": 10.0, "w3": 30.0},
         "c": {"w1": 50.0, "w2": 10.0, "w3": None}}


def test_ratios_are_to_the_fastest_with_a_miss_infinite_and_ties_both_one():
    r = ratios(TIMES)
    assert r["a"] == {"w1": 1.0, "w2": 2.0, "w3": math.inf}
    assert r["b"] == {"w1": 2.0, "w2": 1.0, "w3": 1.0}
    assert r["c"] == {"w1": 5.0, "w2": 1.0, "w3": math.inf}  # tied with b on w2


def test_the_profile_is_the_fraction_within_tau():
    r = list(ratios(TIMES)["a"].values())
    assert [profile(r, tau) for tau in (1.0, 1.99, 2.0, 100.0)] == [1 / 3, 1 / 3, 2 / 3, 2 / 3]


def test_the_score_is_the_exact_area_under_the_profile():
    r = ratios(TIMES)
    # a: (4 - 1) + (4 - 2) + 0 = 5 over 3 workloads and tau_max - 1 = 3
    assert benchmark_score(list(r["a"].values())) == pytest.approx(5 / 9, abs=1e-15)
    assert benchmark_score(list(r["b"].values())) == pytest.approx(8 / 9, abs=1e-15)
    assert benchmark_score(list(r["c"].values())) == pytest.approx(3 / 9, abs=1e-15)  # r = 5 > tau_max: nothing
    # against a fine grid of tau (AlgoPerf's approximation)
    grid = [1 + 3 * k / 300_000 for k in range(300_001)]
    for s in TIMES:
        rs = list(r[s].values())
        approx = sum(profile(rs, t) for t in grid[1:]) * (3 / 300_000) / 3
        assert abs(approx - benchmark_score(rs)) < 1e-4


def test_a_workload_no_strategy_reached_scores_nothing_for_anyone():
    r = ratios({"a": {"w": None}, "b": {"w": None}})
    assert r == {"a": {"w": math.inf}, "b": {"w": math.inf}}
    assert benchmark_score(list(r["a"].values())) == 0.0


def test_the_held_out_rule_and_the_speedup_with_misses_at_the_budget():
    assert counted(12.0, 30.0) == 12.0 and counted(12.0, None) is None
    budgets = {"w1": 100.0, "w2": 100.0, "w3": 60.0}
    got = speedup(TIMES, "a", budgets)
    assert got["a"] == pytest.approx(1.0)
    # b: (10/20 · 20/10 · 60/30)^(1/3) = 2^(1/3)
    assert got["b"] == pytest.approx(2 ** (1 / 3))
    with pytest.raises(ValueError, match="invalid baseline='z'"):
        speedup(TIMES, "z", budgets)
    with pytest.raises(ValueError, match="invalid time -1"):
        ratios({"a": {"w": -1}})
