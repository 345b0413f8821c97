"""Set the built-in suites' targets and budgets from tuned baselines, and write the suite files.

    .venv/bin/python benchmarks/benchmark_targets.py [--jobs 2] [--suite small|full]

For each workload of the suite and its held-out variant, runs the procedure of
:mod:`descentlab.benchmark.targets` (AdamW and Nesterov at the default lr × {1/3, 1, 3}, the best
again on two more seeds; target = the least of the three seeds' best validation metrics, budget =
the most steps any needed) and writes ``src/descentlab/benchmark/suites/<suite>.yaml`` with the
figures as comments. ``full`` is ``small`` plus the longer workloads; writing ``full`` reuses the
figures of the workloads ``small`` shares with it when small.yaml is there (pass --redo to rerun).

Each (workload, part) runs in its own process with one torch thread, ``--jobs`` at once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import yaml

SUITES = Path(__file__).resolve().parents[1] / "src" / "descentlab" / "benchmark" / "suites"
RESULTS = Path(__file__).resolve().parent / "results"  # every figure of the procedure, as JSON

# (workload, variant changes, search budget in steps or None for the recipe's)
SMALL = [
    ("linreg", {"data_seed": 1}, None),
    ("diabetes", {"activation": "tanh"}, None),
    ("digits-mlp", {"activation": "tanh"}, None),
    ("digits-cnn", {"activation": "gelu"}, None),
    ("mnist1d-mlp", {"activation": "gelu"}, None),
]
LONGER = [
    ("mnist1d-logreg", {"data_seed": 1}, None),
    ("mnist1d-cnn", {"activation": "gelu"}, None),
    ("charlm", {"activation": "relu"}, 1000),  # the recipe's 2000 steps cost 80 ms each here
]


def _one(task: tuple[str, str, dict, int | None]) -> tuple[str, str, dict]:
    import torch

    torch.set_num_threads(1)
    from descentlab import workloads
    from descentlab.benchmark import targets, variants

    name, part, changes, steps = task
    wl = variants.build(name, changes) if part == "variant" else workloads.load(name, seed=0)
    start = time.perf_counter()
    lines: list[str] = []
    figures = targets.procedure(wl, search_steps=steps, log=lines.append)
    figures["seconds"] = time.perf_counter() - start
    print("\n".join(lines), flush=True)
    return name, part, figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=["small", "full"], default="small")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--redo", action="store_true")
    args = ap.parse_args()
    table = SMALL + (LONGER if args.suite == "full" else [])
    known: dict[tuple[str, str], dict] = {}
    if args.suite == "full" and not args.redo and (SUITES / "small.yaml").exists():
        for e in yaml.safe_load((SUITES / "small.yaml").read_text())["workloads"]:
            known[(e["workload"], "base")] = {"target": e["target"], "budget_steps": e["budget_steps"]}
            known[(e["workload"], "variant")] = {"target": e["variant"]["target"],
                                                 "budget_steps": e["variant"]["budget_steps"]}
    tasks = [(name, part, changes if part == "variant" else {}, steps)
             for name, changes, steps in table for part in ("base", "variant") if (name, part) not in known]
    # the longest first, so the pool ends together
    tasks.sort(key=lambda t: (t[0] != "charlm", t[0] != "mnist1d-cnn", t[0] != "mnist1d-mlp"))
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for name, part, figures in pool.imap_unordered(_one, tasks):
            known[(name, part)] = figures
            print(f"done {name} {part}: target {figures['target']:.4g}, budget {figures['budget_steps']} "
                  f"({figures['seconds']:.0f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    entries = []
    for name, changes, _ in table:
        base, var = known[(name, "base")], known[(name, "variant")]
        entries.append({"workload": name, "target": float(f"{base['target']:.4g}"),
                        "budget_steps": int(base["budget_steps"]),
                        "variant": {**changes, "target": float(f"{var['target']:.4g}"),
                                    "budget_steps": int(var["budget_steps"])}})
    head = [f"# The {args.suite} suite: targets and budgets set by benchmarks/benchmark_targets.py",
            f"# (`.venv/bin/python benchmarks/benchmark_targets.py --suite {args.suite} --jobs {args.jobs}`, "
            f"{wall:.0f} s on {os.cpu_count()} cores),",
            "# the procedure of descentlab.benchmark.targets: AdamW and Nesterov at the default lr x {1/3, 1, 3}",
            "# (seed 0); target = the median of the 6 runs' best validation metrics (at least 3 reach it),",
            "# budget = the most steps one of those needed. Figures per workload (bests; steps to target):"]
    for (name, part), f in sorted(known.items()):
        if "search" in f:
            head.append(f"#   {name} {part}: bests " + ", ".join(
                f"{r['optimizer']}@{r['lr']:.3g} {r['best']:.4g}" if r["best"] is not None else "diverged"
                for r in f["search"]) + f"; steps {f['steps_to_target']} of {f['search_steps']}")
    if any("search" not in f for f in known.values()):
        head.append("#   (the small suite's workloads: as in small.yaml, whose comments give their figures)")
    text = "\n".join(head) + "\n" + yaml.safe_dump({"name": args.suite, "workloads": entries}, sort_keys=False)
    SUITES.mkdir(parents=True, exist_ok=True)
    (SUITES / f"{args.suite}.yaml").write_text(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"targets-{args.suite}.json").write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in known.items()},
                                                                indent=1))
    print(text)


if __name__ == "__main__":
    main()
