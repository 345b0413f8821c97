"""From runs to times, intervals, verdicts and tunability, on hand-made rows with hand-worked values."""

from __future__ import annotations

import math

import pytest

from descentlab.benchmark import results


def row(strategy, workload, part, study, trial, seed, steps, seconds=None, budget=100, run_steps=None):
    return {"strategy": strategy, "workload": workload, "part": part, "study": study, "trial": trial, "seed": seed,
            "steps_to_target": steps, "seconds_to_target": seconds if seconds is not None else
            (None if steps is None else steps / 10), "budget_steps": budget,
            "steps": run_steps or (steps or budget), "train_seconds": (run_steps or (steps or budget)) / 10}


def test_trial_median_over_seeds_study_min_over_trials_workload_median_over_studies():
    rows = [
        # study 0: trial 0 seeds 10, 30, None -> median 30; trial 1 seeds 20, 20, 50 -> 20: study 0 = 20
        row("a", "w", "base", 0, 0, 0, 10), row("a", "w", "base", 0, 0, 1, 30), row("a", "w", "base", 0, 0, 2, None),
        row("a", "w", "base", 0, 1, 0, 20), row("a", "w", "base", 0, 1, 1, 20), row("a", "w", "base", 0, 1, 2, 50),
        # study 1: trial 0 -> median(None, None, 5) = inf; trial 1 -> median(40, 60, 50) = 50: study 1 = 50
        row("a", "w", "base", 1, 0, 0, None), row("a", "w", "base", 1, 0, 1, None), row("a", "w", "base", 1, 0, 2, 5),
        row("a", "w", "base", 1, 1, 0, 40), row("a", "w", "base", 1, 1, 1, 60), row("a", "w", "base", 1, 1, 2, 50),
        # study 2: all miss -> inf
        *(row("a", "w", "base", 2, t, n, None) for t in (0, 1) for n in (0, 1, 2)),
    ]
    c = results.cells(rows, "steps")
    assert results.part_time(c[("a", "w", "base")]) == 50  # median(20, 50, inf)
    assert results.times(c, ["a"], ["w"]) == {"a": {"w": 50}}


def test_the_held_out_rule_drops_the_base_time_when_the_variant_is_missed():
    rows = [row("a", "w", "base", 0, 0, 0, 10), row("a", "w", "variant", 0, 0, 0, None),
            row("b", "w", "base", 0, 0, 0, 40), row("b", "w", "variant", 0, 0, 0, 90),
            row("a", "v", "base", 0, 0, 0, 10)]  # no variant: counted as it is
    c = results.cells(rows, "steps")
    assert results.times(c, ["a", "b"], ["w", "v"]) == {"a": {"w": None, "v": 10}, "b": {"w": 40, "v": None}}
    assert results.part_times(c, ["a", "b"], ["w"], "base") == {"a": {"w": 10}, "b": {"w": 40}}


def test_one_seed_one_study_gives_point_intervals_and_says_nothing_is_reliable():
    rows = [row("a", "w", "base", 0, 0, 0, 10), row("b", "w", "base", 0, 0, 0, 20),
            row("a", "x", "base", 0, 0, 0, 30), row("b", "x", "base", 0, 0, 0, 10)]
    out = results.summarize(rows, strategies=["a", "b"], workloads=["w", "x"], ruleset="self", time="steps",
                            baseline="a", trials=1, draws=50)
    # r: a = (1, 3) -> (3 + 1)/2/3 ... exactly: a: (4-1) + (4-3) = 4 -> 4/6; b: (4-2) + (4-1) = 5 -> 5/6
    assert out["scores"] == pytest.approx({"a": 4 / 6, "b": 5 / 6})
    assert out["score_ci"] == {"a": [4 / 6, 4 / 6], "b": [5 / 6, 5 / 6]}
    assert "no interval" in out["verdict"]["text"] and out["verdict"]["leader"] == "b"
    # speedup of b over a: sqrt(10/20 * 30/10) = sqrt(1.5)
    assert out["speedup"]["b"] == pytest.approx(math.sqrt(1.5))


def test_bootstrap_intervals_contain_the_point_and_separate_a_clear_winner():
    rows = []
    for n, (fast, slow) in enumerate(((10, 40), (12, 38), (11, 45), (9, 41), (10, 39))):
        for w in ("w", "x"):
            rows += [row("fast", w, "base", 0, 0, n, fast), row("slow", w, "base", 0, 0, n, slow)]
    out = results.summarize(rows, strategies=["fast", "slow"], workloads=["w", "x"], ruleset="self", time="steps",
                            baseline="slow", trials=1, draws=200)
    assert out["scores"]["fast"] == 1.0 and out["score_ci"]["fast"] == [1.0, 1.0]
    lo, hi = out["score_ci"]["slow"]
    assert lo <= out["scores"]["slow"] <= hi and hi < 1.0
    assert out["verdict"]["tied"] == [] and out["verdict"]["leader"] == "fast"


def test_overlapping_intervals_are_a_tie():
    rows = []
    for n, (a, b) in enumerate(((10, 11), (14, 9), (9, 13), (12, 10))):
        rows += [row("a", "w", "base", 0, 0, n, a), row("b", "w", "base", 0, 0, n, b)]
    out = results.summarize(rows, strategies=["a", "b"], workloads=["w"], ruleset="self", time="steps",
                            baseline="a", trials=1, draws=300)
    assert out["verdict"]["tied"] and "tied with" in out["verdict"]["text"]


def test_expected_min_of_k_draws_by_hand():
    v = [1.0, 2.0, 4.0]
    assert results.expected_min(v, 1) == pytest.approx(7 / 3)
    # k = 2: P(min=1) = 1 - (2/3)^2 = 5/9, P(min=2) = (2/3)^2 - (1/3)^2 = 3/9, P(min=4) = 1/9
    assert results.expected_min(v, 2) == pytest.approx(5 / 9 + 2 * 3 / 9 + 4 / 9)
    assert results.expected_min(v, 200) == pytest.approx(1.0)


def test_tunability_counts_a_miss_as_the_budget_and_falls_with_k():
    rows = [row("a", "w", "base", 0, t, 0, s) for t, s in enumerate((10, None, 30))]
    rows += [row("b", "w", "base", 0, t, 0, s) for t, s in enumerate((20, 20, 20))]
    c = results.cells(rows, "steps")
    curves = results.tunability(c, ["a", "b"], ["w"], {"w": 100.0}, 3)
    # a: values (10, 30, 100 for the miss), best over strategies 10
    assert curves["a"][0] == pytest.approx((10 + 30 + 100) / 3 / 10)
    assert curves["a"][1] == pytest.approx(results.expected_min([10, 30, 100], 2) / 10)
    assert curves["b"] == pytest.approx([2.0, 2.0, 2.0])
    assert curves["a"][0] > curves["a"][1] > curves["a"][2]


def test_budgets_in_seconds_use_the_median_seconds_per_step():
    rows = [row("a", "w", "base", 0, 0, 0, 10, budget=300, run_steps=100),
            row("b", "w", "base", 0, 0, 0, None, budget=300, run_steps=300)]
    rows[1]["train_seconds"] = 90.0  # 0.3 s per step; a: 0.1 s per step -> median 0.2
    assert results.budgets(rows, "steps") == {"w": 300.0}
    assert results.budgets(rows, "seconds") == {"w": pytest.approx(60.0)}


def test_an_interval_holds_its_point_even_when_the_draws_lie_below_it():
    # one seed of three misses everywhere: the point's medians are finite, while a draw of three
    # seeds gives a median of inf with probability 7/27 on each workload
    names = [f"w{i}" for i in range(14)]  # all 14 finite in a draw: (20/27)^14 = 1.5 %
    rows = []
    for w in names:
        rows += [row("a", w, "base", 0, 0, 0, 10), row("a", w, "base", 0, 0, 1, 11), row("a", w, "base", 0, 0, 2, None),
                 *(row("b", w, "base", 0, 0, n, 30) for n in range(3))]
    c = results.cells(rows, "steps")
    point = results.scores(results.times(c, ["a", "b"], names))
    raw, _ = results.bootstrap(c, ["a", "b"], names, {w: 100.0 for w in names}, "b", draws=300)
    assert raw["a"][1] < point["a"] == 1.0, "the draws lie below the point: the case the widening is for"
    out = results.summarize(rows, strategies=["a", "b"], workloads=names, ruleset="self",
                            time="steps", baseline="b", trials=1, draws=300)
    lo, hi = out["score_ci"]["a"]
    assert lo == raw["a"][0] and hi == point["a"] == 1.0
