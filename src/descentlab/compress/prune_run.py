"""``descentlab prune``: train the dense model, prune it while fine-tuning, measure both.

The pipeline, for a workload's recipe and a seed:

1. the dense model is trained exactly as ``descentlab train`` trains it;
2. a copy of it, with a copy of its optimizer's state, is fine-tuned for
   ``finetune_steps`` (default: the recipe's budget again) with the recipe's
   optimizer and schedule over that budget, pruned as it goes — unstructured:
   by global magnitude on Zhu & Gupta's cubic schedule over the first 3/4 of
   the fine-tuning, every ``finetune_steps / 40`` steps, the masks held by the
   optimizer (:mod:`.gradual`); structured:
   channels removed in 8 steps on the same schedule over the same window, the
   optimizer's state carried across each (:mod:`.structured`); the last
   quarter trains the pruned model at its final sparsity. These settings were
   chosen by measurement on mnist1d-cnn at 80 %, seeds 0-2
   (``benchmarks/prune_settings.py``; docs/compress.md): the mean loss against
   the dense model was 1.9 points with a quarter of the budget pruned over
   its first half, 1.6 with the whole budget pruned over its first half, 0.7
   over its first 3/4 (the default); keeping the first layer dense, layer-wise
   thresholds or distillation did not do better (1.0, 1.0, 0.9);
3. the same fine-tuning runs for every sparsity of the curve, 0 included: the
   0 point is the dense model fine-tuned as long, the control that separates
   what pruning costs from what the extra steps give;
4. both models are measured: test metric, parameters, nonzero parameters,
   bytes of the saved file (:mod:`.saved`; unstructured weights stored packed),
   FLOPs per sample and CPU latency at batch 1 and at the recipe's batch size,
   timed interleaved in this process (:mod:`.measure`).

With ``distill=True`` the fine-tuning learns from the dense model's soft targets
as well (prune, then distill: :mod:`.distill`), one pipeline — per example or per
token, as the model's logits line up with its targets (:mod:`.logits`).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from .fit import copy_run, evaluate, fit, plan_for, schedule_for, train_dense
from .gradual import GradualPruning
from .inputs import example_inputs as _example_inputs
from .inputs import first
from .magnitude import SCOPES, check_sparsity, make_permanent, sparsity_of
from .measure import LATENCY_RUNS, costs, latency
from .saved import save_model
from .structured import ChannelPruner, ChannelPruning

#: the accuracy–sparsity curve's points (fractions of the weights, or of the channels)
CURVE = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
STRUCTURED_CURVE = (0.0, 0.25, 0.5, 0.75)
STRUCTURED_STEPS = 8
#: the share of the fine-tuning over which the sparsity rises (the rest trains at the final one)
PRUNING_WINDOW = 0.75


@dataclass
class PruneResult:
    summary: dict[str, Any]
    out: Path | None = None
    models: dict[str, Any] = field(default_factory=dict)


def _check_curve(curve: Sequence[float] | None) -> list[float]:
    points = [check_sparsity(s, "curve sparsity") for s in (curve or ())]
    return sorted(set(points))


def example_inputs(wl, n: int) -> Any:
    """The inputs of the first ``n`` training examples (to trace and to time models): a
    tensor, or a dict batch without its targets (:mod:`.inputs`)."""
    return _example_inputs(wl, n)


def prune(workload: str, sparsity: float, *, structured: bool = False, seed: int = 0, out: str | os.PathLike | None = None,
          scope: str = "global", steps: int | None = None, finetune_steps: int | None = None,
          curve: Sequence[float] | None = None, distill: bool = False, data_dir: str | None = None,
          latency_runs: int = LATENCY_RUNS, optimizer: Any = None, lr: float | None = None,
          opt: dict[str, Any] | None = None, log=print) -> PruneResult:
    """Prune ``workload``'s recipe model to ``sparsity`` (see the module docstring).

    ``sparsity``: the fraction of the weights zeroed (unstructured) or of the
    channels and neurons removed (``structured=True``). ``curve``: the sparsities
    of the accuracy–sparsity curve (default :data:`CURVE` or
    :data:`STRUCTURED_CURVE`; ``()`` for none). ``steps``: the dense model's
    budget (default the recipe's). ``optimizer``/``lr``/``opt``: the optimizer of
    the dense training and of the fine-tuning (any optimizer; default the recipe's).
    """
    sparsity = check_sparsity(sparsity, "channel sparsity" if structured else "sparsity")
    if scope not in SCOPES:
        raise UsageError(f"invalid scope={scope!r}: expected one of {', '.join(SCOPES)}")
    points = _check_curve((STRUCTURED_CURVE if structured else CURVE) if curve is None else curve)
    for name, value in (("steps", steps), ("finetune_steps", finetune_steps), ("latency_runs", latency_runs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"invalid {name}={value!r}: expected an integer >= 1")
    optimizer_settings = {"optimizer": optimizer, "lr": lr, "opt": opt}
    plan = plan_for(workload, seed=seed, steps=steps, data_dir=data_dir, **optimizer_settings)
    wl = plan["workload"]
    ft_steps = finetune_steps or plan["total_steps"]
    ft_plan = plan_for(workload, seed=seed, steps=ft_steps, data_dir=data_dir, **optimizer_settings)
    batch = plan["batch_size"] if isinstance(plan["batch_size"], int) else min(1000, wl.num_examples("train"))
    example = example_inputs(wl, batch)
    layout = _layout(wl, plan, seed) if distill else None
    if structured:  # refuse a model the pruner cannot handle before anything is trained
        probe = _fresh_model(plan, seed)
        ChannelPruner(probe, first(example, 2), sparsity, steps=STRUCTURED_STEPS)

    setup = {"workload": workload, "sparsity": sparsity, "structured": structured, "seed": seed, "scope": scope,
             "distill": distill, "latency_runs": latency_runs, "plan": plan, "ft_plan": ft_plan, "points": points,
             "batch": batch, "example": example, "layout": layout}
    if out is None:
        return _run(setup, None, log)
    from ..experiment.lock import hold

    with hold(out):  # everything is valid: only now is the output folder made and held
        return _run(setup, Path(out), log)


def _run(setup: dict[str, Any], work: Path | None, log) -> PruneResult:
    workload, sparsity, structured, seed = setup["workload"], setup["sparsity"], setup["structured"], setup["seed"]
    scope, distill, latency_runs, example = setup["scope"], setup["distill"], setup["latency_runs"], setup["example"]
    plan, ft_plan, points, batch = setup["plan"], setup["ft_plan"], setup["points"], setup["batch"]
    wl, ft_steps = plan["workload"], ft_plan["total_steps"]
    started = time.perf_counter()
    log(f"{wl.name}: training the dense model ({plan['total_steps']} steps, seed {seed})")
    dense = train_dense(plan, seed=seed)
    make_permanent(dense.model)
    runs: dict[float, dict[str, Any]] = {}
    for s in sorted(set(points) | {sparsity}):
        kind = "channels" if structured else "weights"
        log(f"  fine-tuning {ft_steps} steps, pruning to {s:.0%} of the {kind}")
        runs[s] = _prune_one(plan, ft_plan, dense, s, structured=structured, scope=scope, seed=seed,
                             example=example, distill=distill, layout=setup["layout"])
    models = {"dense": dense.model, **{_label(s): r["model"] for s, r in runs.items()}}
    timed = latency(models, first(example, 1), runs=latency_runs)
    timed_batch = latency(models, example, runs=latency_runs)

    files = work if work is not None else Path(_tmpdir())

    def measured(label: str, model, extra: dict[str, Any]) -> dict[str, Any]:
        path = files / f"{label}.pt"
        size = save_model(path, model, workload=workload, example=example,
                          pruning_history=extra.pop("pruning_history", None), sparse=not structured)
        if work is None:
            path.unlink()
        metrics = evaluate(wl, model)
        return {
            f"test_{wl.metric}": metrics[wl.metric], "test_loss": metrics["loss"],
            **costs(model, example), "bytes": size,
            "latency_ms_p50": timed[label]["p50"], "latency_ms_p95": timed[label]["p95"],
            "latency_ms_p50_batch": timed_batch[label]["p50"], "latency_ms_p95_batch": timed_batch[label]["p95"],
            **extra,
        }

    chosen = runs[sparsity]
    summary: dict[str, Any] = {
        "workload": wl.name, "seed": seed, "metric": wl.metric, "structured": structured,
        "scope": None if structured else scope, "sparsity": sparsity, "distill": distill,
        "dense_steps": plan["total_steps"], "finetune_steps": ft_steps, "batch_size": batch,
        "optimizer": plan["optimizer"], "optimizer_source": plan["optimizer_source"], "lr": plan["hparams"]["lr"],
        "lr_source": plan["lr_source"],
        "latency": {"runs": latency_runs, "threads": 1, "batch": batch, "timing": "interleaved, one process"},
        "dense": measured("dense", dense.model, {}),
        "pruned": measured(_label(sparsity), chosen["model"],
                           {"sparsity_measured": chosen["sparsity"], "pruning_history": chosen.get("history")}),
        "curve": [],
    }
    for s, r in runs.items():
        label = _label(s)
        point = summary["pruned"] if s == sparsity else measured(label, r["model"], {"pruning_history": r.get("history")})
        summary["curve"].append({"sparsity": s, "sparsity_measured": r["sparsity"],
                                 **{k: point[k] for k in (f"test_{wl.metric}", "parameters", "nonzero_parameters",
                                                          "bytes", "flops", "latency_ms_p50", "latency_ms_p50_batch")}})
    summary["wall_seconds"] = time.perf_counter() - started
    from ..store import versions

    summary["versions"] = versions()
    result = PruneResult(summary, work, {"dense": dense.model, "pruned": chosen["model"]})
    if work is not None:
        _write_json(work / "summary.json", summary)
        from .prune_report import render

        render(work, summary)
    return result


def _label(s: float) -> str:
    return f"pruned-{round(s * 100):02d}" if s else "finetuned-00"


def _layout(wl, plan: dict[str, Any], seed: int):
    """How the model's logits line up with the targets, for ``distill=True`` (per example or per
    token: :func:`.logits.layout_of`); a UsageError for a model without logits."""
    from .arch import check_distillable
    from .inputs import example_batch
    from .logits import layout_of

    check_distillable(wl)
    return layout_of(wl, _fresh_model(plan, seed), example_batch(wl, 64), f"{wl.name}'s model")


def _fresh_model(plan: dict[str, Any], seed: int):
    torch.manual_seed(seed)
    return plan["workload"].make_model()


def _tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="descentlab-prune-")


def _prune_one(plan, ft_plan, dense, s: float, *, structured: bool, scope: str, seed: int, example, distill: bool,
               layout=None):
    """Fine-tune a copy of the dense run, pruning it to ``s`` as it goes."""
    model, opt = copy_run(dense, plan)
    sched = schedule_for(ft_plan, opt)
    total = ft_plan["total_steps"]
    window = max(1, int(total * PRUNING_WINDOW))
    pruning: Any = None
    if s > 0 and structured:
        pruning = ChannelPruning(first(example, 2), s, start=0, steps=STRUCTURED_STEPS,
                                 frequency=max(1, window // STRUCTURED_STEPS), module=model)
    elif s > 0:
        pruning = GradualPruning(s, start=0, end=window, frequency=max(1, total // 40), scope=scope)
    loss_fn, train_model, train = "workload", model, None
    if distill:  # the teacher's logits cached once when the training split is in-memory tensors
        from .distill import DistillationLoss, Distiller

        wl = plan["workload"]
        tensors = isinstance(wl.train, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in wl.train) \
            and (layout is None or layout.per == "example")  # per-token logits: L×V numbers an example, not cached
        teacher = copy.deepcopy(dense.model)  # the Distiller freezes its teacher: not the dense model itself
        train_model = Distiller(model, teacher, cache_inputs=wl.train[0] if tensors else None)
        train = train_model.index_split(wl.train[1]) if tensors else None
        loss_fn = DistillationLoss(per=layout.per, shift=layout.shift) if layout is not None else DistillationLoss()
    fit(ft_plan, train_model, opt, sched, seed=seed, callbacks=[pruning] if pruning else [], loss_fn=loss_fn,
        train=train)
    make_permanent(model)
    if structured:
        history = pruning.pruner.pruning_history() if pruning else []
        measured = 1 - sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in dense.model.parameters())
    else:
        history, measured = None, sparsity_of(model)
    return {"model": model, "history": history, "sparsity": measured}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
