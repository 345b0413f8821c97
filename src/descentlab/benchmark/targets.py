"""Setting a workload's validation target and step budget from tuned baselines (``auto``).

AlgoPerf (Dahl et al. 2023, §4.3) sets each workload's target from the best validation
result of tuned baseline training algorithms, and its time budget from the time those
baselines needed. The same procedure here, small enough to run on a laptop:

1. baselines: AdamW and Nesterov momentum (one adaptive and one momentum method, of
   AlgoPerf's four target-setting algorithms AdamW, NadamW, Nesterov and heavy ball);
2. each at lr = the workload's default × {1/3, 1, 3}, seed 0, for the search budget (the
   entry's ``budget_steps`` when it is a number, else the workload's recipe), evaluated
   :data:`EVALS` times;
3. the target is the median of the six runs' best validation metrics (the ⌈6/2⌉-th best: at
   least half of the baseline runs reach it), and the budget is the most steps any run that
   reached it needed, rounded up to a multiple of 10.

Decided after a first version took the best configuration's least good seed as the target: on
the small suite the seven classic optimizers at their defaults then reached almost no target
with its held-out variant (the best of a grid is the top of its noise, on a digits validation
set of 144 examples one example is 0.7 %), and a benchmark where every strategy misses ranks
nothing. The median of a tuned grid is a level that well-configured baselines reach, and the
budget is the time the slowest of them needed, as AlgoPerf sets budgets from the time the
target-setting runs took.

``benchmarks/benchmark_targets.py`` runs this on the built-in suites and writes their files
(``descentlab/benchmark/suites/*.yaml``); ``target: auto`` in a user's suite runs it on the
user's workload before the benchmark (its figures are printed and kept in benchmark.json).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..experiment.strategy import Strategy

BASELINES = ("adamw", "nesterov")
FACTORS = (1 / 3, 1.0, 3.0)
EVALS = 40


def _recipe_steps(wl: Any, batch: Any) -> int:
    from .. import workloads

    recipe = wl.recipe
    if recipe.get("steps"):
        return int(recipe["steps"])
    return int(recipe["epochs"]) * workloads.recipes.steps_per_epoch(wl.num_examples("train"), batch)


def procedure(wl: Any, *, batch_size: Any = None, search_steps: int | None = None, device: str = "auto",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """The target and budget of workload ``wl`` (a Workload), with the figures that set them."""
    from ..experiment.single import lr_and_source, time_to_target, train_one, warm_up

    batch = batch_size if batch_size is not None else wl.recipe["batch_size"]
    steps = search_steps or _recipe_steps(wl, batch)
    every = max(1, steps // EVALS)
    strategies = [Strategy(label=b, optimizer=b) for b in BASELINES]
    warm_up(wl, strategies, steps=steps, batch_size=batch, device=device, log=lambda msg: None)
    key = f"val_{wl.metric}"
    search = []
    for s in strategies:
        default = lr_and_source(s, wl)[0]
        for f in FACTORS:
            summary, rows = train_one(wl, s, 0, steps=steps, batch_size=batch, eval_every=every, target=None,
                                      lr=default * f, device=device)
            best = summary["best_metric"]
            search.append({"optimizer": s.optimizer, "lr": default * f, "best": best, "rows": rows})
            log(f"  {wl.name}: {s.optimizer} lr {default * f:.3g}: best {wl.metric} "
                + (f"{best:.4g}" if best is not None else "none (diverged)"))
    finite = [r for r in search if isinstance(r["best"], float) and math.isfinite(r["best"])]
    if not finite:
        from ..errors import UsageError

        raise UsageError(f"workload {wl.name!r}: no baseline trained ({', '.join(BASELINES)}, 3 lrs each): "
                         "no target can be set; give target and budget_steps in the suite file")
    ranked = sorted(finite, key=lambda r: -r["best"] if wl.metric_mode == "max" else r["best"])
    target = ranked[math.ceil(len(ranked) / 2) - 1]["best"]  # half of the runs (rounded up) reach it
    needed = [time_to_target(r["rows"], key, target, wl.metric_mode)[0] for r in search]
    budget = int(math.ceil(max(n for n in needed if n is not None) / 10) * 10)
    figures = {"search_steps": steps, "search": [{k: v for k, v in r.items() if k != "rows"} for r in search],
               "steps_to_target": needed, "target": target, "budget_steps": budget}
    log(f"  {wl.name}: target {wl.metric} {target:.4g} (reached by {sum(n is not None for n in needed)} of "
        f"{len(search)} baseline runs), budget {budget} steps (the most one of them needed)")
    return figures
