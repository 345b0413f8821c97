"""Every ``families`` workload trains to its suite target with its own recipe, and how long that takes.

    .venv/bin/python benchmarks/families_recipes.py [--seeds 0,1,2] [--jobs 2]

For each workload of the ``families`` suite, base and held-out variant: the workload's recipe
(optimizer, lr, weight decay, schedule, batch size, steps) trained from seeds 0-2 with one torch
thread, evaluated at the suite's cadence; prints the steps and training seconds to the suite's
target (``-`` where the recipe missed it), the wall seconds of the whole run with its evaluations,
and the parameters. The issue asked for each to reach its target in at most 2 minutes on one core.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _one(task: tuple[str, str, int]) -> dict:
    import torch

    torch.set_num_threads(1)
    from descentlab.benchmark import suites
    from descentlab.experiment.single import train_one, warm_up
    from descentlab.experiment.strategy import Strategy

    name, part, seed = task
    entry = next(e for e in suites.load("families").entries if e.name == name)
    p = entry.base if part == "base" else entry.variant
    wl = entry.workload(part)
    r = wl.recipe
    s = Strategy(label=r["optimizer"], optimizer=r["optimizer"], lr=r["lr"],
                 hparams={**r["optimizer_kwargs"], **({"weight_decay": r["weight_decay"]} if r["weight_decay"] else {})},
                 schedule=r["schedule"], schedule_kwargs=r["schedule_kwargs"])
    steps = r["steps"] or r["epochs"] * -(-wl.num_examples("train") // r["batch_size"])
    warm_up(wl, [s], steps=steps, batch_size=r["batch_size"], log=lambda m: None)
    start = time.perf_counter()
    summary, _ = train_one(wl, s, seed, steps=steps, batch_size=r["batch_size"], eval_every=p.eval_every or
                           max(1, steps // 20), target=p.target)
    with torch.random.fork_rng(devices=[]):
        params = sum(q.numel() for q in wl.make_model().parameters())
    return {"name": name, "part": part, "seed": seed, "steps": steps, "hit": summary["steps_to_target"],
            "seconds": summary["seconds_to_target"], "wall": time.perf_counter() - start, "target": p.target,
            "metric": wl.metric, "final": summary["final_metric"], "params": params, "recipe": r}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from descentlab.benchmark import suites

    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [(e.name, part, seed) for e in suites.load("families").entries for part, _ in e.parts() for seed in seeds]
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        got = pool.map(_one, tasks)
    print("| workload | part | recipe | params | target | steps to target (seeds) | train s to target | "
          "wall s per run |")
    print("|---|---|---|---|---|---|---|---|")
    for e in suites.load("families").entries:
        for part, _ in e.parts():
            rows = [g for g in got if g["name"] == e.name and g["part"] == part]
            r = rows[0]["recipe"]
            hits = ", ".join(str(g["hit"]) if g["hit"] is not None else "-" for g in rows)
            secs = ", ".join(f"{g['seconds']:.1f}" if g["seconds"] is not None else "-" for g in rows)
            walls = max(g["wall"] for g in rows)
            print(f"| {e.name} | {part} | {r['optimizer']} {r['lr']:g}, {r['schedule'] or 'constant'}, "
                  f"{rows[0]['steps']} steps | {rows[0]['params']:,} | {rows[0]['metric']} {rows[0]['target']:.4g} | "
                  f"{hits} | {secs} | ≤ {walls:.1f} |")


if __name__ == "__main__":
    main()
