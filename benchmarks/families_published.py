"""The families leaderboard against AlgoPerf's published ranking: Kendall's τ with a bootstrap interval.

    .venv/bin/descentlab benchmark --suite families --strategies benchmarks/strategies/published.yaml \
        --seeds 3 --out runs/families-published
    .venv/bin/python benchmarks/families_published.py runs/families-published
    .venv/bin/python benchmarks/families_published.py runs/families-published 0,1   # stopped early: seeds 0-1

Published scores (AlgoPerf v0.5 leaderboard, MLCommons, github.com/mlcommons/submissions_algorithms,
previous_leaderboards/algoperf_v05; Kasimbeg et al. 2025, "Accelerating neural network training: an
analysis of the AlgoPerf training algorithms competition", ICLR): external tuning — Distributed
Shampoo 0.7784, Schedule-Free AdamW 0.7077, NAdamW baseline 0.5707; self-tuning — Schedule-Free
AdamW 0.8542, NAdamW baseline 0.8194. AdamW, AdEMAMix, Muon, Lion and cautious MARS have no entry
there. τ is computed over the strategies both rankings hold, on this benchmark's scores (computed
among all its strategies), and its interval by resampling the seeds of every (strategy, workload,
part) as the benchmark's own intervals do.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

from scipy.stats import kendalltau

from descentlab.benchmark import results

PUBLISHED = {
    "external": {"shampoo": 0.7784, "schedulefree-adamw": 0.7077, "nadamw": 0.5707},
    "self": {"schedulefree-adamw": 0.8542, "nadamw": 0.8194},
}


def _rows(out: Path) -> list[dict]:
    rows = []
    for r in csv.DictReader(open(out / "times.csv")):
        for k in ("study", "trial", "seed", "budget_steps"):
            r[k] = int(r[k])
        for k in ("steps_to_target", "reference_seconds_to_target", "seconds_to_target", "seconds_per_step",
                  "steps", "train_seconds"):
            r[k] = float(r[k]) if r[k] not in ("", None) else None
        rows.append(r)
    return rows


def _stored(out: Path, seeds: list[int]) -> tuple[dict, list[dict]]:
    """A benchmark stopped before its end: its finished runs of ``seeds`` from its run store,
    summarized as the benchmark would (every strategy and part must have them all)."""
    from descentlab.benchmark.execute import GROUP
    from descentlab.store import RunStore

    runs = RunStore(f"sqlite:///{out / 'runs.sqlite'}").runs(GROUP)
    rows = [r["summary"] for r in runs if r.get("summary") and r["summary"]["seed"] in seeds]
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    cells = {(r["strategy"], r["workload"], r["part"], r["seed"]) for r in rows}
    missing = [(s, w, p, n) for s in strategies for w in workloads for p in ("base", "variant") for n in seeds
               if (s, w, p, n) not in cells]
    if missing:
        raise SystemExit(f"{len(missing)} runs of seeds {seeds} are not finished, e.g. {missing[:3]}")
    d = results.summarize(rows, strategies=strategies, workloads=workloads, ruleset="self", time="seconds",
                          baseline="adamw", trials=1, replicates=len(seeds))
    d["strategies"], d["workloads"] = strategies, {w: {} for w in workloads}
    return d, rows


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/families-published")
    if (out / "benchmark.json").exists():
        d = json.loads((out / "benchmark.json").read_text())
        rows = _rows(out)
    else:  # stopped before its end: --seeds 0,1 as the second argument
        d, rows = _stored(out, [int(n) for n in sys.argv[2].split(",")])
        print(f"from the run store, seeds {sys.argv[2]}: {len(rows)} runs")
        for s in d["verdict"]["order"]:
            hits = ", ".join(f"{w} {d['hits'][s][w]['base'][0]}·{d['hits'][s][w].get('variant', [0])[0]}"
                             for w in d["workloads"])
            n = sum(d["times"][s][w] is not None for w in d["workloads"])
            print(f"| {s} | {d['scores'][s]:.3f} [{d['score_ci'][s][0]:.3f}, {d['score_ci'][s][1]:.3f}] | "
                  f"{d['scores_steps'][s]:.3f} [{d['score_ci_steps'][s][0]:.3f}, {d['score_ci_steps'][s][1]:.3f}] | "
                  f"{d['scores_raw'][s]:.3f} | {n} / {len(d['workloads'])} | {hits} |")
        print("verdict:", d["verdict"]["text"], "| unreached:", d["unreached"])
    strategies, workloads = d["strategies"], list(d["workloads"])
    c = results.cells(rows, "seconds")
    rng = random.Random(0)
    draws = [results.scores(results.times(c, strategies, workloads, rng)) for _ in range(1000)]
    print(f"our scores (reference seconds): " + ", ".join(f"{s} {d['scores'][s]:.3f}" for s in d["verdict"]["order"]))
    print("| published ruleset | shared strategies | published order | our order | Kendall τ | 95% interval |")
    print("|---|---|---|---|---|---|")
    for ruleset, pub in PUBLISHED.items():
        shared = [s for s in pub if s in d["scores"]]
        ours = [d["scores"][s] for s in shared]
        theirs = [pub[s] for s in shared]
        tau = kendalltau(ours, theirs).statistic
        taus = sorted(kendalltau([x[s] for s in shared], theirs).statistic for x in draws)
        taus = [t if t == t else 0.0 for t in taus]  # all tied in a draw: no order, τ undefined -> 0
        lo, hi = taus[25], taus[974]
        order_pub = " > ".join(sorted(shared, key=lambda s: -pub[s]))
        order_ours = " > ".join(sorted(shared, key=lambda s: -d["scores"][s]))
        print(f"| {ruleset} | {len(shared)} | {order_pub} | {order_ours} | {tau:.2f} | [{lo:.2f}, {hi:.2f}] |")


if __name__ == "__main__":
    main()
