"""Set the built-in suites' targets and budgets from tuned baselines, and write the suite files.

    .venv/bin/python benchmarks/benchmark_targets.py [--jobs 2] [--suite small|full]

For each workload of the suite and its held-out variant, runs the procedure of
:mod:`descentlab.benchmark.targets` (AdamW and Nesterov at the default lr × {1/3, 1, 3} on seeds
0-2, the best configuration again on seeds 3-4; target = the level it reaches on 4 of its 5
seeds, budget = 1.5 × the steps it needed at its median seed; refused when within noise of the
untrained model or chance) and writes ``src/descentlab/benchmark/suites/<suite>.yaml`` with the
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

# (workload, variant changes, search budget in steps or None for the recipe's, metric or None for the
# workload's). digits' validation set has 144 examples: its accuracy moves in steps of 0.7 %, more
# than the seed spread, so its targets are on the validation loss.
SMALL = [
    ("linreg", {"data_seed": 1}, None, None),
    ("diabetes", {"activation": "tanh"}, None, None),
    ("digits-mlp", {"activation": "tanh"}, None, "loss"),
    ("digits-cnn", {"activation": "gelu"}, None, "loss"),
    ("mnist1d-mlp", {"activation": "gelu"}, None, None),
]
LONGER = [
    ("mnist1d-logreg", {"data_seed": 1}, None, None),
    ("mnist1d-cnn", {"activation": "gelu"}, None, None),
    ("charlm", {"activation": "relu"}, 1000, None),  # the recipe's 2000 steps cost 80 ms each here
]
# one small workload per AlgoPerf workload family (descentlab.workloads.families): their metrics are
# already continuous (validation loss, bpc, SSIM)
FAMILIES = [
    ("digits-resnet", {"activation": "silu"}, None, None),
    ("digits-vit", {"activation": "relu"}, None, None),
    ("charlm-tiny", {"activation": "relu"}, None, None),
    ("translate", {"activation": "gelu"}, None, None),
    ("molgraph", {"activation": "gelu"}, None, None),
    ("clicks", {"activation": "gelu"}, None, None),
    ("digits-unet", {"activation": "tanh"}, None, None),
    ("mnist1d-ctc", {"activation": "gelu"}, None, None),
]


def _one(task: tuple[str, str, dict, int | None, str | None]) -> tuple[str, str, dict]:
    import torch

    torch.set_num_threads(1)
    from descentlab.benchmark import suites, targets

    name, part, changes, steps, metric = task
    base = suites.Part(workload=name, target=None, budget_steps=None)
    entry = suites.Entry(name=name, base=base, variant=suites.Part(name, None, None, changes) if changes else None,
                         metric=metric)
    wl = entry.workload(part)
    start = time.perf_counter()
    lines: list[str] = []
    figures = targets.procedure(wl, search_steps=steps, log=lines.append)
    figures["seconds"] = time.perf_counter() - start
    print("\n".join(lines), flush=True)
    return name, part, figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=["small", "full", "families"], default="small")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--redo", action="store_true")
    args = ap.parse_args()
    table = FAMILIES if args.suite == "families" else SMALL + (LONGER if args.suite == "full" else [])
    known: dict[tuple[str, str], dict] = {}
    if args.suite == "full" and not args.redo and (SUITES / "small.yaml").exists():
        for e in yaml.safe_load((SUITES / "small.yaml").read_text())["workloads"]:
            known[(e["workload"], "base")] = {"target": e["target"], "budget_steps": e["budget_steps"]}
            known[(e["workload"], "variant")] = {"target": e["variant"]["target"],
                                                 "budget_steps": e["variant"]["budget_steps"]}
    saved = RESULTS / f"targets-{args.suite}.json"
    if saved.exists() and not args.redo:  # figures of this procedure already measured: reuse them
        for k, f in json.loads(saved.read_text()).items():
            name, part = k.split("/")
            if "slowest_steps" in f and any(name == t[0] for t in table):
                f.setdefault("eval_every", max(1, f["search_steps"] // 40))  # the procedure's cadence
                known[(name, part)] = f
    tasks = [(name, part, changes if part == "variant" else {}, steps, metric)
             for name, changes, steps, metric in table for part in ("base", "variant") if (name, part) not in known]
    # the longest first, so the pool ends together
    tasks.sort(key=lambda t: (t[0] != "charlm", t[0] != "mnist1d-cnn", t[0] != "mnist1d-mlp", t[0] != "digits-cnn",
                              t[0] != "charlm-tiny"))
    if tasks:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for name, part, figures in pool.imap_unordered(_one, tasks):
                known[(name, part)] = figures
                print(f"done {name} {part}: target {figures['target']:.4g}, budget {figures['budget_steps']} "
                      f"({figures['seconds']:.0f} s)", file=sys.stderr, flush=True)
                RESULTS.mkdir(parents=True, exist_ok=True)
                saved.write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in known.items()}, indent=1))
    wall = sum(f.get("seconds", 0.0) for f in known.values()) / max(1, args.jobs)
    entries = []
    for name, changes, _, metric in table:
        base, var = known[(name, "base")], known[(name, "variant")]
        entries.append({"workload": name, **({"metric": metric} if metric else {}),
                        "target": float(f"{base['target']:.4g}"), "budget_steps": int(base["budget_steps"]),
                        **({"eval_every": int(base["eval_every"])} if base.get("eval_every") else {}),
                        "variant": {**changes, "target": float(f"{var['target']:.4g}"),
                                    "budget_steps": int(var["budget_steps"]),
                                    **({"eval_every": int(var["eval_every"])} if var.get("eval_every") else {})}})
    head = [f"# The {args.suite} suite: targets and budgets set by benchmarks/benchmark_targets.py",
            f"# (`.venv/bin/python benchmarks/benchmark_targets.py --suite {args.suite} --jobs {args.jobs}`, "
            f"{wall:.0f} s on {os.cpu_count()} cores),",
            "# the procedure of descentlab.benchmark.targets: AdamW and Nesterov at the default lr x {1/3, 1, 3}",
            "# on seeds 0-2, the best configuration (best median) again on seeds 3-4; target = the level reached",
            "# on every seed by half the configurations (and on 4 of 5 by the best); budget = 1.5 x the steps of the",
            "# slowest configuration that reaches it at its median seed; runs evaluated every eval_every steps, the",
            "# procedure's cadence. Figures per workload (median best per configuration; the best one's 5 bests and",
            "# steps to target; untrained level and noise):"]
    for (name, part), f in sorted(known.items()):
        if "search" in f:
            def fmt(v):
                return f"{v:.4g}" if v is not None else "diverged"

            b = f["best"]
            head.append(f"#   {name} {part}: medians " + ", ".join(
                f"{r['optimizer']}@{r['lr']:.3g} {fmt(r['median'])}" for r in f["search"])
                + f"; best {b['optimizer']}@{b['lr']:.3g}: bests [{', '.join(fmt(v) for v in b['bests'])}], "
                f"steps {b['steps_to_target']} of {f['search_steps']}; untrained {f['level']:.4g}, "
                f"noise {f['noise']:.3g}")
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
