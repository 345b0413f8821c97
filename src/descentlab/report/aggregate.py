"""Per-strategy statistics of a comparison, its ranking, and a plain-language verdict.

Input: the compare runs as ``RunStore.runs("compare")`` returns them (one dict
per strategy × seed, with ``config``, ``status`` and ``summary``). Nothing here
reads curves; everything is computed from the run summaries, so the verdict is
a function of the numbers in the table and nothing else.

Statistics, per strategy over its seeds:

* final / best validation metric: mean ± sample standard deviation (ddof=1)
  over the seeds that produced a finite value — a diverged seed has no metric
  and is counted in ``diverged`` instead. One value has no spread: its
  standard deviation is NaN (not 0), and it is written without ± and with
  its n (``0.94 (n=1)`` in the table, ``0.94 from 1 seed`` in the verdict).
* steps / seconds to target: median, [min, max] over *all* seeds, a seed that
  never reached the target counting as ∞. The median is ∞ when more than half
  the seeds never reached it; when exactly half did not (an even number of
  seeds), the middle pair straddles ∞ and the finite one of the pair is taken.
* wall time: mean over seeds.

Ranking: when a target is set and some strategy reached it in at least half its
seeds, by median steps to target (then more seeds reaching it, then median
seconds, then best metric); otherwise by mean best metric in the metric's
direction (``mode`` "max" or "min"). Strategies without any finite metric come last.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

INF = math.inf


@dataclass(frozen=True)
class Spread:
    """Median and [min, max] of a per-seed quantity where "never" is ∞."""

    median: float
    low: float
    high: float
    reached: int  # seeds with a finite value
    n: int  # seeds in all

    @property
    def never(self) -> int:
        return self.n - self.reached


@dataclass
class StrategyStats:
    """One row of the summary table: a strategy over its seeds."""

    strategy: str
    optimizer: str
    hparams: dict[str, Any]
    schedule: str | None
    schedule_kwargs: dict[str, Any]
    seeds: list[int]
    final_mean: float
    final_std: float
    final_n: int  # seeds with a finite final metric
    best_mean: float
    best_std: float
    best_n: int
    steps_to_target: Spread
    seconds_to_target: Spread
    wall_mean: float
    never_reached: int  # finished seeds that never reached the target (0 without a target)
    diverged: int
    failed: int  # failed, or never finished (interrupted)
    errors: list[str] = field(default_factory=list)
    rank: int = 0
    lr_source: str | None = None  # where the lr came from (experiment.build's LR_* texts)

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class Setup:
    """What the whole comparison shares: workload, budget, metric, target."""

    workload: str
    metric: str
    mode: str
    target: float | None
    steps: int | None
    batch_size: Any
    seeds: list[int]
    strategies: list[str]
    tuned: Any = False  # "lr-find" / "sweep": every strategy's lr was tuned first with the same budget


def as_number(value: Any) -> float:
    """A finite float, or NaN for None / NaN / ±inf / anything not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for fewer than two values) and count of the finite values."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    std = statistics.stdev(vals) if len(vals) > 1 else math.nan
    return statistics.fmean(vals), std, len(vals)


def spread(values: Sequence[float | None]) -> Spread:
    """Median, min and max of per-seed values, ``None``/NaN meaning never (∞)."""
    vals = sorted(v if math.isfinite(v) else INF for v in (as_number(x) for x in values))
    n = len(vals)
    reached = sum(math.isfinite(v) for v in vals)
    if n == 0:
        return Spread(INF, INF, INF, 0, 0)
    if 2 * (n - reached) > n:
        median = INF
    elif n % 2:
        median = vals[n // 2]
    else:
        a, b = vals[n // 2 - 1], vals[n // 2]
        median = a if not math.isfinite(b) else (a + b) / 2
    return Spread(median, vals[0], vals[-1], reached, n)


def _seed_key(seed: Any) -> tuple:
    """Seeds in numeric order (10 after 2), anything else after them."""
    if isinstance(seed, (int, float)) and not isinstance(seed, bool):
        return (0, seed, "")
    return (1, 0, str(seed))


def latest_runs(runs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One run per (strategy, seed): the newest, when a comparison was re-run in place."""
    latest: dict[tuple[str, Any], Mapping[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r.get("id") or 0):
        cfg = run.get("config") or {}
        key = (str(cfg.get("strategy", run.get("name", ""))), cfg.get("seed"))
        latest[key] = run  # keeps the first run's place in the order, the newest's data
    return list(latest.values())


def setup(runs: Sequence[Mapping[str, Any]]) -> Setup:
    """The shared settings of a comparison, read from its runs' configurations."""
    runs = latest_runs(runs)
    if not runs:
        raise ValueError("no compare runs to summarize")
    cfg = runs[0].get("config") or {}
    target = as_number(cfg.get("target"))
    mode = str(cfg.get("metric_mode") or "max")
    if mode not in ("max", "min"):
        raise ValueError(f"metric_mode must be 'max' or 'min', got {mode!r}")
    strategies: list[str] = []
    seeds: list[int] = []
    for run in runs:
        c = run.get("config") or {}
        label = str(c.get("strategy", run.get("name", "")))
        if label not in strategies:
            strategies.append(label)
        if c.get("seed") is not None and c["seed"] not in seeds:
            seeds.append(c["seed"])
    return Setup(
        workload=str(cfg.get("workload", "")),
        metric=str(cfg.get("metric") or "metric"),
        mode=mode,
        target=None if math.isnan(target) else target,
        steps=cfg.get("steps"),
        batch_size=cfg.get("batch_size"),
        seeds=sorted(seeds, key=_seed_key),
        strategies=strategies,
        tuned=cfg.get("tuned") or False,
    )


def aggregate(
    runs: Sequence[Mapping[str, Any]], *, target: float | None = None, mode: str | None = None
) -> list[StrategyStats]:
    """Per-strategy statistics, ranked (``rank`` 1 is the best; the list is in rank order).

    ``target`` and ``mode`` default to the runs' configuration (``target``, ``metric_mode``).
    """
    runs = latest_runs(runs)
    if not runs:
        return []
    shared = setup(runs)
    target = shared.target if target is None else target
    mode = shared.mode if mode is None else mode
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")

    by_strategy: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        cfg = run.get("config") or {}
        by_strategy.setdefault(str(cfg.get("strategy", run.get("name", ""))), []).append(run)

    table = []
    for label, group in by_strategy.items():
        group = sorted(group, key=lambda r: _seed_key((r.get("config") or {}).get("seed")))
        cfg = group[0].get("config") or {}
        summaries = [r.get("summary") or {} for r in group]
        statuses = [str(r.get("status") or s.get("status") or "") for r, s in zip(group, summaries)]
        final = mean_std(as_number(s.get("final_metric")) for s in summaries)
        best = mean_std(as_number(s.get("best_metric")) for s in summaries)
        walls = [w for w in (as_number(s.get("wall_seconds")) for s in summaries) if math.isfinite(w)]
        table.append(
            StrategyStats(
                strategy=label,
                optimizer=str(cfg.get("optimizer", "")),
                hparams=dict(cfg.get("hparams") or {}),
                schedule=cfg.get("schedule"),
                schedule_kwargs=dict(cfg.get("schedule_kwargs") or {}),
                seeds=[(r.get("config") or {}).get("seed") for r in group],
                final_mean=final[0],
                final_std=final[1],
                final_n=final[2],
                best_mean=best[0],
                best_std=best[1],
                best_n=best[2],
                steps_to_target=spread([s.get("steps_to_target") for s in summaries]),
                seconds_to_target=spread([s.get("seconds_to_target") for s in summaries]),
                wall_mean=statistics.fmean(walls) if walls else math.nan,
                never_reached=0
                if target is None
                else sum(st == "finished" and s.get("steps_to_target") is None for st, s in zip(statuses, summaries)),
                diverged=sum(st == "diverged" for st in statuses),
                failed=sum(st not in ("finished", "diverged") for st in statuses),
                errors=[str(s["error"]) for s in summaries if s.get("error")],
                lr_source=cfg.get("lr_source"),
            )
        )

    sign = -1.0 if mode == "max" else 1.0

    def by_metric(row: StrategyStats) -> tuple:
        missing = math.isnan(row.best_mean)
        return (missing, 0.0 if missing else sign * row.best_mean)

    if target is not None and any(math.isfinite(r.steps_to_target.median) for r in table):
        table.sort(
            key=lambda r: (
                r.steps_to_target.median,
                -r.steps_to_target.reached,
                r.seconds_to_target.median,
                *by_metric(r),
            )
        )
    else:
        table.sort(key=by_metric)
    for i, row in enumerate(table, 1):
        row.rank = i
    return table


# ---------------------------------------------------------------- formatting


def fmt_value(x: float) -> str:
    """A metric value: 4 significant digits, "—" for none."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "∞"
    return f"{x:.4g}"


def fmt_steps(x: float) -> str:
    if math.isnan(x):
        return "—"
    return "∞" if math.isinf(x) else f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def fmt_seconds(x: float) -> str:
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞"
    if 0 < x < 0.001:
        return "<0.001 s"
    return f"{x:#.2g} s" if x < 1 else f"{x:.1f} s"  # 0.50 s, 0.023 s: two digits, so small times still differ


def fmt_mean_std(mean: float, std: float) -> str:
    """``mean ± std``: the mean to 4 significant digits, the spread to 2; no ± without a spread (NaN std)."""
    if math.isnan(mean):
        return "—"
    if math.isnan(std):
        return fmt_value(mean)
    return f"{fmt_value(mean)} ± {std:.2g}"


def describe_target(target: float, metric: str, mode: str) -> str:
    """``90% accuracy`` for an accuracy-like metric in [0, 1], else ``mse ≤ 0.05``."""
    if "acc" in metric.lower() and 0 < target <= 1:
        return f"{target * 100:g}% {metric}"
    return f"{metric} {'≥' if mode == 'max' else '≤'} {target:g}"


# ---------------------------------------------------------------- verdict


def _overlap(a: Spread, b: Spread) -> bool:
    """Do the seed ranges of two finite-median spreads overlap?"""
    return not (a.high < b.low or b.high < a.low)


def _times(x: float) -> str:
    return f"{x:.1f}×"


def _and(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def verdict(table: Sequence[StrategyStats], target: float | None, metric: str, mode: str) -> list[str]:
    """A short plain-language verdict, computed from the table's numbers only.

    It names a winner only where the numbers support one: the top two must be
    separated by more than their seed spread (mean difference larger than the sum
    of standard deviations for metrics; disjoint [min, max] ranges for steps to
    target), and every diverged, failed or never-reaching seed is reported.
    """
    if not table:
        return ["No runs to compare."]
    lines: list[str] = []
    single_seed = all(row.n <= 1 for row in table)

    # 1. who reached the target first
    reaching = [r for r in table if math.isfinite(r.steps_to_target.median)]
    if target is not None:
        goal = describe_target(target, metric, mode)
        reaching.sort(key=lambda r: (r.steps_to_target.median, -r.steps_to_target.reached, r.seconds_to_target.median))
        if not reaching:
            anyone = any(r.steps_to_target.reached for r in table)
            lines.append(f"No strategy reached {goal} in {'at least half of its' if anyone else 'any'} seeds.")
        else:
            lead = reaching[0]
            st, sec = lead.steps_to_target, lead.seconds_to_target
            at = f"{'median ' if st.n > 1 else ''}{fmt_steps(st.median)} steps ({fmt_seconds(sec.median)})"
            if len(reaching) == 1:
                half = " in at least half of its seeds" if st.n > 1 else ""  # "half" of one seed says nothing
                if len(table) > 1:
                    lines.append(f"{lead.strategy} was the only strategy to reach {goal}{half}: {at}.")
                else:
                    lines.append(f"{lead.strategy} reached {goal}{half}: {at}.")
            else:
                second = reaching[1]
                st2 = second.steps_to_target
                if st.median == st2.median:
                    tied = [r for r in reaching if r.steps_to_target.median == st.median]
                    lines.append(
                        f"{_and([r.strategy for r in tied])} reached {goal} at the same "
                        f"{'median ' if any(r.n > 1 for r in tied) else ''}step count ({fmt_steps(st.median)}) — no winner."
                    )
                elif _overlap(st, st2):
                    lines.append(
                        f"{lead.strategy} reached {goal} in fewer steps by the median than {second.strategy} "
                        f"({fmt_steps(st.median)} vs {fmt_steps(st2.median)}), but their seed ranges overlap "
                        f"([{fmt_steps(st.low)}–{fmt_steps(st.high)}] vs [{fmt_steps(st2.low)}–{fmt_steps(st2.high)}]) "
                        "— not a reliable difference."
                    )
                else:
                    lines.append(
                        f"{lead.strategy} reached {goal} first: {at}, "
                        f"{_times(st2.median / st.median)} fewer steps than {second.strategy}."
                    )
                fastest = min(reaching, key=lambda r: r.seconds_to_target.median)
                fast = fmt_seconds(fastest.seconds_to_target.median)
                if fastest is not lead and fastest.seconds_to_target.median < sec.median and fast != fmt_seconds(sec.median):
                    lines.append(
                        f"{fastest.strategy} reached it in less training time though: "
                        f"{'median ' if fastest.n > 1 or lead.n > 1 else ''}{fast} vs {fmt_seconds(sec.median)}."
                    )

    # 2. the best validation metric
    scored = [r for r in table if not math.isnan(r.best_mean)]
    sign = -1.0 if mode == "max" else 1.0
    scored.sort(key=lambda r: sign * r.best_mean)

    def best(row: StrategyStats) -> str:  # a mean over fewer seeds than ran says so, and so does a lone value
        text = fmt_mean_std(row.best_mean, row.best_std)
        if row.best_n < row.n:
            return text + f" over {row.best_n} of {row.n} seeds"
        if row.best_n == 1 and not (single_seed and len(table) > 1):  # else the closing line says it once
            return text + " from 1 seed"
        return text

    def sd(row: StrategyStats) -> float:  # a lone value adds no spread
        return 0.0 if math.isnan(row.best_std) else row.best_std

    if not scored:
        lines.append(f"No strategy produced a finite validation {metric}.")
    elif len(scored) == 1:
        lead = scored[0]
        if len(table) == 1:
            lines.append(f"{lead.strategy}: best validation {metric} {best(lead)}.")
        else:
            lines.append(f"{lead.strategy} was the only strategy with a finite validation {metric}: {best(lead)}.")
    else:
        lead, second = scored[0], scored[1]
        a, b = best(lead), best(second)
        if fmt_value(lead.best_mean) == fmt_value(second.best_mean):  # equal as the table shows them
            lines.append(f"Best validation {metric}: {lead.strategy} {a}, {second.strategy} {b}.")
            lines.append(f"The top two ({lead.strategy}, {second.strategy}) are tied — no winner.")
        elif abs(lead.best_mean - second.best_mean) < sd(lead) + sd(second):
            lines.append(f"Best validation {metric}: {lead.strategy} {a}, {second.strategy} {b}.")
            lines.append(
                f"The top two ({lead.strategy}, {second.strategy}) differ by less than their seed spread "
                "— not a reliable difference."
            )
        else:
            lines.append(f"{lead.strategy} had the best validation {metric}: {a}, ahead of {second.strategy} ({b}).")

    # 3. what went wrong, per strategy
    for row in table:
        if row.never_reached:  # diverged and failed seeds are reported on their own
            lines.append(f"{row.strategy} never reached the target in {row.never_reached} of {row.n} seeds.")
        if row.diverged:
            lines.append(f"{row.strategy} diverged in {row.diverged} of {row.n} seeds.")
        if row.failed:
            lines.append(f"{row.strategy} failed or did not finish in {row.failed} of {row.n} seeds.")

    if single_seed and len(table) > 1:
        lines.append(
            "One seed per strategy (n=1): no spread to show, and the differences above "
            "are not tested against seed-to-seed variation."
        )
    return lines
