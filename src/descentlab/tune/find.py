"""The range test on a workload, as ``descentlab lr-find`` and ``compare --tune-lr`` run it.

The model is the one a training run of the same seed starts from (the same
``build`` as ``train``), the optimizer the workload's recipe for that optimizer
(its hyperparameters and parameter groups), the batches the recipe's batch size
in a seeded order. ``write`` puts ``lr_find.json`` and ``lr_find.png`` in a folder.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..experiment.build import build
from ..experiment.config import TrainConfig
from ..experiment.run import resolve
from .range_test import LRFindResult, lr_find

#: sweeps per lr-find on a workload: the confidence needs at least two, three cost 300 steps
DEFAULT_SWEEPS = 3


def find_for_workload(workload: str, *, optimizer: str | None = None, seed: int = 0, opt: dict[str, Any] | None = None,
                      batch_size: int | str | None = None, data_dir: str | None = None,
                      sweeps: int = DEFAULT_SWEEPS, **options: Any) -> tuple[LRFindResult, dict[str, Any]]:
    """``(result, plan)``: the range test of ``optimizer`` (default: the recipe's) on
    ``workload``'s seed-``seed`` model; ``options`` go to :func:`lr_find`."""
    config = TrainConfig(workload=workload, optimizer=optimizer, seed=seed, opt=dict(opt or {}),
                         batch_size=batch_size, data_dir=data_dir)
    plan = resolve(config)
    wl = plan["workload"]
    model, opt_obj, _ = build(wl, plan["optimizer"], plan["hparams"], None, {}, seed=seed,
                              total_steps=plan["total_steps"])
    result = lr_find(model, opt_obj, wl.loss_fn, wl.train, batch_size=plan["batch_size"], seed=seed,
                     sweeps=sweeps, target_key=wl.target_key, optimizer_name=plan["optimizer"], **options)
    return result, plan


def _clean(value: Any) -> Any:
    """JSON without NaN: a rule that could not read a curve is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write(result: LRFindResult, out: str | Path, *, workload: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out/lr_find.json`` and ``out/lr_find.png``; return the JSON's path."""
    from ..report.plots import plot_lr_find
    from ..store import versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = _clean({**result.to_dict(), "workload": workload, **(extra or {}), "versions": versions()})
    path = out / "lr_find.json"
    tmp = out / ".lr_find.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    title = f"lr range test: {workload or ''} {result.optimizer or ''}".strip()
    plot_lr_find(data, out / "lr_find.png", title=title)
    return path
