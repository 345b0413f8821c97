"""Aggregation of a comparison's runs and the verdict computed from it."""

import math

import pytest

from descentlab.report import aggregate as agg
from descentlab.store import RunStore

from .conftest import STRATEGIES, make_compare_store

INF = math.inf
ONE_SEED = "One seed per strategy (n=1): no spread to show, and the differences above are not tested against seed-to-seed variation."


@pytest.fixture(scope="module")
def runs(compare_dir):
    return RunStore(compare_dir / "runs.sqlite").runs("compare")


@pytest.fixture(scope="module")
def table(runs):
    return agg.aggregate(runs)


def by_label(table):
    return {row.strategy: row for row in table}


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1000, 1200, 1500], (1200, 1000, 1500, 3)),
        ([1800, 2200, None], (2200, 1800, INF, 2)),
        ([1800, None, None], (INF, 1800, INF, 1)),  # more than half never: the median is ∞
        ([None, None, None], (INF, INF, INF, 0)),
        ([100, 300, 200, 400], (250, 100, 400, 4)),
        ([100, 300, None, None], (300, 100, INF, 2)),  # exactly half: the finite one of the middle pair
        ([100, None, None, None], (INF, 100, INF, 1)),
        ([7.5], (7.5, 7.5, 7.5, 1)),
        ([float("nan"), 5.0], (5.0, 5.0, INF, 1)),
    ],
)
def test_spread(values, expected):
    s = agg.spread(values)
    assert (s.median, s.low, s.high, s.reached) == expected
    assert s.n == len(values) and s.never == len(values) - expected[3]


def test_setup(runs):
    s = agg.setup(runs)
    assert (s.workload, s.metric, s.mode, s.target, s.steps, s.batch_size) == ("digits-mlp", "accuracy", "max", 0.9, 3000, 64)
    assert s.seeds == [0, 1, 2]
    assert s.strategies == list(STRATEGIES)


def test_statistics(table):
    rows = by_label(table)
    adam = rows["adam"]
    assert adam.n == 3 and adam.seeds == [0, 1, 2]
    assert adam.optimizer == "adam" and adam.hparams == {"lr": 0.001}
    assert adam.schedule == "cosine" and adam.schedule_kwargs == {"total_steps": 3000}
    assert adam.final_mean == pytest.approx(0.94) and adam.final_std == pytest.approx(0.01)
    assert adam.best_mean == pytest.approx(0.95) and adam.best_std == pytest.approx(0.01)
    assert (adam.final_n, adam.best_n) == (3, 3)
    assert adam.steps_to_target == agg.Spread(1200, 1000, 1500, 3, 3)
    assert adam.seconds_to_target == agg.Spread(6.0, 5.0, 7.5, 3, 3)
    assert adam.wall_mean == pytest.approx(3000 * 0.005 + 2.0)
    assert (adam.diverged, adam.failed, adam.never_reached) == (0, 0, 0)

    rms = rows["rmsprop"]  # one seed diverged: metrics over the other two, "never" counts as ∞
    assert rms.final_mean == pytest.approx(0.895) and rms.final_std == pytest.approx(math.sqrt(0.00005))
    assert rms.best_mean == pytest.approx(0.905) and (rms.best_n, rms.n) == (2, 3)
    assert rms.steps_to_target == agg.Spread(2200, 1800, INF, 2, 3)
    assert rms.seconds_to_target == agg.Spread(5.0, 4.0, INF, 2, 3)
    assert rms.wall_mean == pytest.approx((2 * (3000 * 0.0022 + 2.0) + 700 * 0.0022 + 2.0) / 3)
    assert (rms.diverged, rms.failed, rms.never_reached) == (1, 0, 0)
    assert rms.errors == ["non-finite loss at step 700"]

    nes = rows["nesterov"]
    assert nes.steps_to_target == agg.Spread(2400, 2000, 3000, 3, 3)
    assert nes.seconds_to_target == agg.Spread(9.0, 8.0, 12.0, 3, 3)

    sgd = rows["<b>x</b>"]
    assert sgd.steps_to_target == agg.Spread(INF, INF, INF, 0, 3)
    assert sgd.best_mean == pytest.approx(0.81) and sgd.best_std == pytest.approx(0.01)
    assert (sgd.never_reached, sgd.diverged) == (3, 0)


def test_ranked_by_time_to_target(table):
    assert [r.strategy for r in table] == ["adam", "rmsprop", "nesterov", "<b>x</b>"]
    assert [r.rank for r in table] == [1, 2, 3, 4]


def test_verdict(table):
    assert agg.verdict(table, 0.9, "accuracy", "max") == [
        "adam reached 90% accuracy first: median 1200 steps (6.0 s), 1.8× fewer steps than rmsprop.",
        "rmsprop reached it in less training time though: median 5.0 s vs 6.0 s.",
        "Best validation accuracy: adam 0.95 ± 0.01, nesterov 0.94 ± 0.01.",
        "The top two (adam, nesterov) differ by less than their seed spread — not a reliable difference.",
        "rmsprop diverged in 1 of 3 seeds.",
        "<b>x</b> never reached the target in 3 of 3 seeds.",
    ]


def _seeds(*specs):
    """(best, steps_to_target, seconds_to_target, status) per seed → the conftest layout."""
    return [(best, best, stt, sec, 0.001, status) for best, stt, sec, status in specs]


def _table(tmp_path, strategies, target=0.9, mode=None):
    store = make_compare_store(tmp_path / "runs.sqlite", strategies, target=target, curves=False)
    return agg.aggregate(store.runs("compare"), mode=mode)


def test_clear_winner_without_target(tmp_path):
    strategies = {
        "sgd": ("sgd", {"lr": 0.1}, _seeds((0.80, None, None, "finished"), (0.82, None, None, "finished"))),
        "adam": ("adam", {"lr": 0.001}, _seeds((0.95, None, None, "finished"), (0.97, None, None, "finished"))),
    }
    table = _table(tmp_path, strategies, target=None)
    assert [r.strategy for r in table] == ["adam", "sgd"]
    assert table[0].never_reached == 0  # no target: nothing to miss
    assert agg.verdict(table, None, "accuracy", "max") == [
        "adam had the best validation accuracy: 0.96 ± 0.014, ahead of sgd (0.81 ± 0.014).",
    ]


def test_lower_is_better(tmp_path):
    strategies = {
        "adam": ("adam", {"lr": 0.001}, _seeds((0.30, None, None, "finished"))),
        "lion": ("lion", {"lr": 0.0001}, _seeds((0.10, 40, 1.5, "finished"))),
        "sgd": ("sgd", {"lr": 0.1}, _seeds((0.20, 80, 2.0, "finished"))),
    }
    table = _table(tmp_path, strategies, target=0.25, mode="min")
    assert [r.strategy for r in table] == ["lion", "sgd", "adam"]
    assert agg.verdict(table, 0.25, "mse", "min") == [
        "lion reached mse ≤ 0.25 first: 40 steps (1.5 s), 2.0× fewer steps than sgd.",
        "lion had the best validation mse: 0.1, ahead of sgd (0.2).",  # one seed each: no ± 0
        "adam never reached the target in 1 of 1 seeds.",
        ONE_SEED,
    ]
    assert all("±" not in line for line in agg.verdict(table, 0.25, "mse", "min"))
    assert all(math.isnan(r.best_std) and math.isnan(r.final_std) for r in table)  # one value has no spread


def test_overlapping_steps_are_not_a_winner(tmp_path):
    strategies = {
        "a": ("adam", {"lr": 0.001}, _seeds((0.95, 100, 1.0, "finished"), (0.95, 300, 3.0, "finished"), (0.95, 200, 2.0, "finished"))),
        "b": ("sgd", {"lr": 0.1}, _seeds((0.91, 250, 2.5, "finished"), (0.92, 400, 4.0, "finished"), (0.93, 150, 1.5, "finished"))),
    }
    table = _table(tmp_path, strategies)
    lines = agg.verdict(table, 0.9, "accuracy", "max")
    assert lines[0] == (
        "a reached 90% accuracy in fewer steps by the median than b (200 vs 250), but their seed ranges "
        "overlap ([100–300] vs [150–400]) — not a reliable difference."
    )
    assert lines[1] == "a had the best validation accuracy: 0.95 ± 0, ahead of b (0.92 ± 0.01)."
    assert not any(" first:" in line for line in lines)


def test_nobody_reaches_and_everything_diverges(tmp_path):
    strategies = {
        "a": ("adam", {"lr": 0.001}, _seeds((0.5, None, None, "finished"), (0.6, None, None, "finished"))),
        "b": ("sgd", {"lr": 10.0}, _seeds((None, None, None, "diverged"), (None, None, None, "failed"))),
    }
    table = _table(tmp_path, strategies)
    assert [r.strategy for r in table] == ["a", "b"]  # ranked by best metric; b has none
    assert agg.verdict(table, 0.9, "accuracy", "max") == [
        "No strategy reached 90% accuracy in any seeds.",
        "a was the only strategy with a finite validation accuracy: 0.55 ± 0.071.",
        "a never reached the target in 2 of 2 seeds.",
        "b diverged in 1 of 2 seeds.",
        "b failed or did not finish in 1 of 2 seeds.",
    ]


def test_only_one_strategy_reaches(tmp_path):
    strategies = {
        "a": ("adam", {"lr": 0.001}, _seeds((0.93, 100, 1.0, "finished"), (0.91, None, None, "finished"), (0.92, 120, 1.2, "finished"))),
        "b": ("sgd", {"lr": 0.1}, _seeds((0.8, None, None, "finished"), (0.81, 500, 5.0, "finished"), (0.79, None, None, "finished"))),
    }
    lines = agg.verdict(_table(tmp_path, strategies), 0.9, "accuracy", "max")
    assert lines[0] == "a was the only strategy to reach 90% accuracy in at least half of its seeds: median 120 steps (1.2 s)."
    assert "a never reached the target in 1 of 3 seeds." in lines
    assert "b never reached the target in 2 of 3 seeds." in lines


def test_latest_run_per_seed_wins(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for best in (0.5, 0.7):  # the same strategy and seed twice: a re-run in place
        config = {"strategy": "a", "optimizer": "adam", "seed": 0, "metric": "accuracy", "metric_mode": "max", "target": None}
        run_id = store.start("a/seed0", config, group="compare")
        store.finish(run_id, [], {"status": "finished", "final_metric": best, "best_metric": best})
    runs = store.runs("compare")
    assert len(agg.latest_runs(runs)) == 1
    (row,) = agg.aggregate(runs)
    assert (row.n, row.best_mean) == (1, 0.7)
    assert agg.verdict([row], None, "accuracy", "max") == ["a: best validation accuracy 0.7 from 1 seed."]


def test_formatting():
    assert agg.describe_target(0.9, "accuracy", "max") == "90% accuracy"
    assert agg.describe_target(0.975, "accuracy", "max") == "97.5% accuracy"
    assert agg.describe_target(0.05, "mse", "min") == "mse ≤ 0.05"
    assert agg.describe_target(3.0, "r2", "max") == "r2 ≥ 3"
    assert agg.fmt_steps(INF) == "∞" and agg.fmt_steps(1500.0) == "1500" and agg.fmt_steps(1500.5) == "1500.5"
    assert agg.fmt_seconds(7.84) == "7.8 s" and agg.fmt_seconds(0.5) == "0.50 s"
    assert agg.fmt_seconds(0.0234) == "0.023 s" and agg.fmt_seconds(0.0181) != agg.fmt_seconds(0.0234)
    assert agg.fmt_seconds(0.00004) == "<0.001 s"
    assert agg.fmt_mean_std(math.nan, math.nan) == "—"
    assert agg.fmt_mean_std(0.94, math.nan) == "0.94" and agg.fmt_mean_std(0.94, 0.0) == "0.94 ± 0"
    assert agg.mean_std([0.94]) == (0.94, pytest.approx(math.nan, nan_ok=True), 1)
    assert agg.mean_std([0.9, math.nan]) == (0.9, pytest.approx(math.nan, nan_ok=True), 1)
    assert agg.verdict([], 0.9, "accuracy", "max") == ["No runs to compare."]


def test_best_metric_over_fewer_seeds_says_so(tmp_path):
    strategies = {
        "a": ("adam", {"lr": 0.001}, _seeds((0.99, None, None, "finished"), (None, None, None, "diverged"), (None, None, None, "diverged"))),
        "b": ("sgd", {"lr": 0.1}, _seeds((0.80, None, None, "finished"), (0.81, None, None, "finished"), (0.82, None, None, "finished"))),
    }
    assert agg.verdict(_table(tmp_path, strategies, target=None), None, "accuracy", "max") == [
        "a had the best validation accuracy: 0.99 over 1 of 3 seeds, ahead of b (0.81 ± 0.01).",
        "a diverged in 2 of 3 seeds.",
    ]


def test_one_seed_ties_and_mixed_seed_counts(tmp_path):
    """One seed: no ±, no "median", no "seed spread"; equal (as shown) best values are a tie."""
    strategies = {
        "a": ("adam", {"lr": 0.001}, _seeds((0.9931, 18, 0.0181, "finished"))),
        "b": ("adafactor", {"lr": 0.3}, _seeds((0.9931, 21, 0.0234, "finished"))),
    }
    lines = agg.verdict(_table(tmp_path / "one", strategies, target=0.95), 0.95, "accuracy", "max")
    assert lines == [
        "a reached 95% accuracy first: 18 steps (0.018 s), 1.2× fewer steps than b.",
        "Best validation accuracy: a 0.9931, b 0.9931.",
        "The top two (a, b) are tied — no winner.",
        ONE_SEED,
    ]
    assert not any("±" in line or "median" in line or "seed spread" in line for line in lines)
    # three seeds beside one: the lone value says n, the other keeps its ±
    strategies = {
        "a": ("adam", {"lr": 0.001}, _seeds(*[(0.95, None, None, "finished")] * 3)),
        "b": ("sgd", {"lr": 0.1}, _seeds((0.80, None, None, "finished"))),
    }
    lines = agg.verdict(_table(tmp_path / "mixed", strategies, target=None), None, "accuracy", "max")
    assert lines == ["a had the best validation accuracy: 0.95 ± 0, ahead of b (0.8 from 1 seed)."]


def test_one_strategy_one_seed(tmp_path):
    strategies = {"a": ("adam", {"lr": 0.001}, _seeds((0.9792, 48, 0.017, "finished")))}
    (row,) = table = _table(tmp_path, strategies, target=0.95)
    assert math.isnan(row.best_std) and row.best_n == 1
    assert agg.verdict(table, 0.95, "accuracy", "max") == [
        "a reached 95% accuracy: 48 steps (0.017 s).",
        "a: best validation accuracy 0.9792 from 1 seed.",
    ]


def test_a_tie_names_every_strategy_at_the_lead_step_count(tmp_path):
    """Three strategies at 900 steps (the demo's nesterov, momentum, adamw): all three are named."""
    strategies = {
        "nesterov": ("nesterov", {"lr": 0.05}, _seeds((0.92, 900, 1.6, "finished"))),
        "momentum": ("momentum", {"lr": 0.05}, _seeds((0.93, 900, 2.1, "finished"))),
        "adamw": ("adamw", {"lr": 0.01}, _seeds((0.93, 900, 2.3, "finished"))),
        "sgd": ("sgd", {"lr": 0.25}, _seeds((0.94, 1700, 4.1, "finished"))),
    }
    table = _table(tmp_path, strategies)
    first = agg.verdict(table, 0.9, "accuracy", "max")[0]
    assert first == "nesterov, momentum and adamw reached 90% accuracy at the same step count (900) — no winner."
