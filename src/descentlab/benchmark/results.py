"""From the runs to the benchmark's numbers: times, scores, intervals, speedups, tunability.

Rules (AlgoPerf's, Dahl et al. 2023 §4, where they exist; stated in the report):

* a run's time is its training time (or steps) to the first evaluation at the validation
  target, evaluation excluded; a miss within the budget is ∞. The training time that scores is
  reference time: steps to target × the strategy's calibrated cost per step on that part
  (:mod:`descentlab.benchmark.calibrate`), so the neighbours' load does not move it; the raw
  seconds are reported beside it (``times_raw``);
* a trial's time is the median over its seeds; a study's time is its fastest trial's; a
  part's (base workload or held-out variant) time is the median over the studies;
* a base workload's time counts only if the strategy also reaches the variant's target
  (:func:`descentlab.benchmark.score.counted`);
* scores and profiles: :mod:`descentlab.benchmark.score`.

Beyond AlgoPerf:

* intervals: a two-level bootstrap (Efron & Tibshirani 1993) — for each strategy and part,
  studies are drawn with replacement, and within each drawn study its seeds (the same draw for
  all its trials); the times, ratios and scores are recomputed on each of :data:`BOOTSTRAP`
  draws, and the interval is the 2.5th to 97.5th percentile, widened to hold the point
  estimate where the draws all lie on one side of it. They often do: the score is a
  non-smooth statistic of medians that may be ∞, and when one of three seeds missed, a draw
  of three seeds has a median of ∞ with probability 7/27, so draws fall below the point more
  often than above it (measured on the small suite: BENCHMARKS.md, "Benchmark"). Widening
  only makes the verdict call more ties. With one study and one seed there is nothing to
  resample: the interval is the point;
* the verdict: the leader is the highest score; a strategy whose interval overlaps the
  leader's is tied with it;
* enough seeds (``--seeds auto``): :func:`separation` says whether the leader's interval is
  clear of the next strategy's and, when not, roughly how many seeds (or studies) would make it
  so at the observed difference — the intervals narrow as 1/√n, so n' ≈ n × ((h₁ + h₂) / d)²,
  h₁ the leader's lower half-width, h₂ the next one's upper half-width, d their difference in
  score (a rough guide: the bootstrap's widths are not exactly Gaussian);
* hits: per strategy, workload and part, the runs that reached the target of all its runs;
* tunability (external ruleset): the expected best time after k = 1..K trials drawn from a
  study's K (Dodge et al. 2019, "Show your work", expected validation performance), a miss
  counted as the budget, divided by the fastest strategy's time on that workload, and
  averaged geometrically over the workloads (base workloads).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .score import TAU_MAX, benchmark_score, counted, ratios, speedup

BOOTSTRAP = 1000
LEVEL = 0.95
MEASURES = ("seconds", "steps", "raw")
#: each measure's column of times.csv: seconds are reference seconds, raw the measured ones
COLUMNS = {"seconds": "reference_seconds_to_target", "steps": "steps_to_target", "raw": "seconds_to_target"}
INF = math.inf


def _value(row: Mapping[str, Any], measure: str) -> float:
    value = row.get(COLUMNS[measure])
    if value is None and measure == "seconds" and "reference_seconds_to_target" not in row:
        value = row.get("seconds_to_target")  # a benchmark recorded before reference time
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else INF


Cells = dict[tuple[str, str, str], dict[int, dict[int, dict[int, float]]]]  # (strategy, workload, part) -> study -> trial -> seed -> t


def cells(rows: Sequence[Mapping[str, Any]], measure: str) -> Cells:
    out: Cells = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for row in rows:
        out[(row["strategy"], row["workload"], row["part"])][row["study"]][row["trial"]][row["seed"]] = _value(row, measure)
    return out


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else INF


def part_time(studies: Mapping[int, Mapping[int, Mapping[int, float]]], draw: random.Random | None = None) -> float:
    """Median over studies of the fastest trial's median-over-seeds time; ``draw``: one bootstrap draw."""
    keys = sorted(studies)
    if draw is not None:
        keys = [draw.choice(keys) for _ in keys]
    times = []
    for s in keys:
        trials = studies[s]
        seeds = sorted(next(iter(trials.values())))
        if draw is not None:
            seeds = [draw.choice(seeds) for _ in seeds]
        times.append(min(_median([trials[t][n] for n in seeds]) for t in trials))
    return _median(times)


def times(c: Cells, strategies: Sequence[str], workloads: Sequence[str],
          draw: random.Random | None = None) -> dict[str, dict[str, float | None]]:
    """strategy -> workload -> counted time (None: ∞)."""
    out: dict[str, dict[str, float | None]] = {}
    for s in strategies:
        out[s] = {}
        for w in workloads:
            base = part_time(c[(s, w, "base")], draw) if (s, w, "base") in c else INF
            t = None if base == INF else base
            if (s, w, "variant") in c:
                held = part_time(c[(s, w, "variant")], draw)
                t = counted(t, None if held == INF else held)
            out[s][w] = t
    return out


def part_times(c: Cells, strategies: Sequence[str], workloads: Sequence[str], part: str) -> dict[str, dict[str, float | None]]:
    """strategy -> workload -> the part's own time (None: ∞), before the held-out rule."""
    out: dict[str, dict[str, float | None]] = {}
    for s in strategies:
        out[s] = {}
        for w in workloads:
            t = part_time(c[(s, w, part)]) if (s, w, part) in c else INF
            out[s][w] = None if t == INF else t
    return out


def scores(t: Mapping[str, Mapping[str, float | None]], tau_max: float = TAU_MAX) -> dict[str, float]:
    r = ratios(t)
    return {s: benchmark_score(list(r[s].values()), tau_max) for s in t}


def budgets(rows: Sequence[Mapping[str, Any]], measure: str) -> dict[str, float]:
    """Each workload's budget in ``measure``: its step budget, or for seconds the step budget ×
    the median calibrated seconds per step of the strategies on it (raw: the median measured
    seconds per step of every run on it)."""
    steps: dict[str, int] = {}
    per_step: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["part"] != "base":
            continue
        steps[row["workload"]] = int(row["budget_steps"])
        if measure == "seconds" and row.get("seconds_per_step"):
            per_step[row["workload"]].append(row["seconds_per_step"])
        elif row.get("steps") and row.get("train_seconds"):
            per_step[row["workload"]].append(row["train_seconds"] / row["steps"])
    if measure == "steps":
        return {w: float(b) for w, b in steps.items()}
    return {w: b * (_median(per_step[w]) if per_step[w] else 1.0) for w, b in steps.items()}


def interval(values: Sequence[float], level: float = LEVEL) -> list[float]:
    ordered = sorted(values)
    lo = ordered[int(math.floor((1 - level) / 2 * (len(ordered) - 1)))]
    hi = ordered[int(math.ceil((1 + level) / 2 * (len(ordered) - 1)))]
    return [lo, hi]


def bootstrap(c: Cells, strategies: Sequence[str], workloads: Sequence[str], budget: Mapping[str, float],
              baseline: str, *, draws: int = BOOTSTRAP, seed: int = 0,
              tau_max: float = TAU_MAX) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``(score interval, speedup interval)`` per strategy."""
    rng = random.Random(seed)
    got_scores: dict[str, list[float]] = defaultdict(list)
    got_speedups: dict[str, list[float]] = defaultdict(list)
    for _ in range(draws):
        t = times(c, strategies, workloads, rng)
        for s, v in scores(t, tau_max).items():
            got_scores[s].append(v)
        for s, v in speedup(t, baseline, budget).items():
            got_speedups[s].append(v)
    return ({s: interval(v) for s, v in got_scores.items()}, {s: interval(v) for s, v in got_speedups.items()})


def separation(score: Mapping[str, float], ci: Mapping[str, Sequence[float]], n: int) -> dict[str, Any]:
    """Whether the leader's interval is clear of the next strategy's, and when not, about how many
    replicates (seeds, or studies) would make it so at the observed difference (None: no
    difference observed, so no number of seeds separates them; see the module's docstring)."""
    order = sorted(score, key=lambda s: -score[s])
    leader = order[0]
    if len(order) < 2:
        return {"leader": leader, "next": None, "separated": True, "needed": None, "replicates": n}
    nxt = order[1]
    separated = ci[leader][0] > ci[nxt][1]
    d = score[leader] - score[nxt]
    h = (score[leader] - ci[leader][0]) + (ci[nxt][1] - score[nxt])
    needed = None if separated or d <= 0 else max(n + 1, math.ceil(n * (h / d) ** 2))
    return {"leader": leader, "next": nxt, "separated": separated, "needed": needed, "replicates": n}


def hits(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, list[int]]]]:
    """strategy -> workload -> part -> [runs that reached the target, runs]."""
    out: dict[str, dict[str, dict[str, list[int]]]] = {}
    for row in rows:
        cell = out.setdefault(row["strategy"], {}).setdefault(row["workload"], {}).setdefault(row["part"], [0, 0])
        cell[0] += row.get("steps_to_target") is not None
        cell[1] += 1
    return out


def verdict(score: Mapping[str, float], ci: Mapping[str, Sequence[float]], resampled: bool = True,
            n: int | None = None, what: str = "seeds") -> dict[str, Any]:
    """The leader (highest score) and the strategies tied with it (intervals overlap); with ``n``
    (the seeds or studies run), how many would separate the leader from the next when tied."""
    order = sorted(score, key=lambda s: -score[s])
    leader = order[0]
    lo = ci[leader][0]
    tied = [s for s in order[1:] if ci[s][1] >= lo]
    if score[leader] == 0:
        text = "no strategy reached any target within its budget: no ranking"
    elif not resampled:
        text = (f"{leader} has the highest score ({score[leader]:.3f}); with one study and one seed there is no "
                "interval, so no difference is shown to be reliable (run with --seeds 3)")
    elif tied:
        text = (f"{leader} leads (score {score[leader]:.3f}), tied with {', '.join(tied)}: "
                "their intervals overlap its interval")
    else:
        text = f"{leader} leads (score {score[leader]:.3f}); its interval overlaps no other strategy's"
    out = {"leader": leader, "tied": tied, "text": text, "order": order}
    if len(order) > 1:
        last = order[-1]
        out["separates_last"] = ci[leader][0] > ci[last][1]
    if n is not None and len(order) > 1:
        sep = separation(score, ci, n)
        out["needed"] = sep["needed"]
        if tied and score[leader] > 0 and resampled:
            out["text"] += (f" ({n} {what} run; " + (f"about {sep['needed']} would separate {leader} from {sep['next']} "
                                                     f"at the observed difference)" if sep["needed"]
                                                     else f"{leader} and {sep['next']} score alike: more {what} would not separate them)"))
    return out


def expected_min(values: Sequence[float], k: int) -> float:
    """E[min of k draws with replacement from ``values``] (Dodge et al. 2019, for a minimum)."""
    v = sorted(values)
    n = len(v)
    total = 0.0
    for i, x in enumerate(v):  # P(min = v_i) = ((n-i)/n)^k - ((n-i-1)/n)^k, i from 0
        p = ((n - i) / n) ** k - ((n - i - 1) / n) ** k
        if p:
            total += p * x
    return total


def tunability(c: Cells, strategies: Sequence[str], workloads: Sequence[str], budget: Mapping[str, float],
               k_max: int) -> dict[str, list[float]]:
    """strategy -> [y(1), ..., y(K)]: the expected best time after k trials over the fastest
    strategy's time, geometric mean over the base workloads (a miss counted as the budget)."""
    best = {}
    for w in workloads:
        point = [part_time(c[(s, w, "base")]) for s in strategies if (s, w, "base") in c]
        finite = [t for t in point if t < INF]
        best[w] = min(finite) if finite else budget[w]
    out = {}
    for s in strategies:
        curve = []
        for k in range(1, k_max + 1):
            logs = []
            for w in workloads:
                studies = c.get((s, w, "base"))
                if not studies:
                    continue
                per_study = []
                for trials in studies.values():
                    trial_times = [min(_median(list(seeds.values())), budget[w]) for seeds in trials.values()]
                    per_study.append(expected_min(trial_times, k))
                logs.append(math.log(statistics.fmean(per_study) / best[w]))
            curve.append(math.exp(statistics.fmean(logs)) if logs else INF)
        out[s] = curve
    return out


def _null(t: Mapping[str, Mapping[str, float | None]]) -> dict[str, dict[str, float | None]]:
    return {s: dict(per) for s, per in t.items()}


def summarize(rows: Sequence[Mapping[str, Any]], *, strategies: Sequence[str], workloads: Sequence[str],
              ruleset: str, time: str, baseline: str, trials: int, draws: int = BOOTSTRAP,
              tau_max: float = TAU_MAX, replicates: int | None = None) -> dict[str, Any]:
    """Everything benchmark.json holds about the results (the rest is the settings)."""
    by = {m: cells(rows, m) for m in MEASURES}
    budget = {m: budgets(rows, m) for m in MEASURES}
    t = {m: times(by[m], strategies, workloads) for m in MEASURES}
    sc = {m: scores(t[m], tau_max) for m in MEASURES}
    ci, sp_ci = {}, {}
    for m in ("seconds", "steps"):
        ci[m], sp_ci[m] = bootstrap(by[m], strategies, workloads, budget[m], baseline, draws=draws, tau_max=tau_max)
    sp = {m: speedup(t[m], baseline, budget[m]) for m in MEASURES}
    for m in ("seconds", "steps"):  # the interval holds its point (see the module's docstring)
        ci[m] = {s: [min(lo, sc[m][s]), max(hi, sc[m][s])] for s, (lo, hi) in ci[m].items()}
        sp_ci[m] = {s: [min(lo, sp[m][s]), max(hi, sp[m][s])] for s, (lo, hi) in sp_ci[m].items()}
    out = {
        "times": _null(t["seconds"]), "steps": _null(t["steps"]), "times_raw": _null(t["raw"]),
        "times_base": part_times(by["seconds"], strategies, workloads, "base"),
        "steps_base": part_times(by["steps"], strategies, workloads, "base"),
        "steps_variant": part_times(by["steps"], strategies, workloads, "variant"),
        "scores": sc[time], "scores_seconds": sc["seconds"], "scores_steps": sc["steps"], "scores_raw": sc["raw"],
        "score_ci": ci[time], "score_ci_seconds": ci["seconds"], "score_ci_steps": ci["steps"],
        "speedup": {"baseline": baseline, **sp[time]}, "speedup_ci": sp_ci[time],
        "speedup_steps": {"baseline": baseline, **sp["steps"]},
        "budgets": budget,
        "verdict": verdict(sc[time], ci[time], resampled=any(
            len(studies) > 1 or any(len(seeds) > 1 for trials in studies.values() for seeds in trials.values())
            for studies in by[time].values()), n=replicates, what="seeds" if ruleset == "self" else "studies"),
        "hits": hits(rows),
        "unreached": [w for w in workloads if all(t["steps"][s][w] is None for s in strategies)],
    }
    if ruleset == "external":
        out["tunability"] = tunability(by[time], strategies, workloads, budget[time], trials)
    return out
