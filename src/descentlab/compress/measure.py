"""What a model costs: parameters, nonzero parameters, FLOPs per sample
(``torch.utils.flop_counter``), and CPU latency.

Latency is measured the way it is felt at inference: ``torch.inference_mode``,
the model in eval mode, one CPU thread (the workloads are small enough that
more threads add only synchronisation; see ``cli.set_threads``), after warm-up
calls that are not timed. Models compared with each other are timed in one
process, interleaved round by round (A, B, then B, A, ...: each round starts
with the next model), so that a slower moment of the machine, or being timed
first, costs every model the same.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .inputs import Inputs, call, first

#: timed calls per model and batch size (the issue asks for >= 100)
LATENCY_RUNS = 200
WARMUP_RUNS = 20


def parameters(model: nn.Module) -> int:
    """Parameters of the model as it computes (a pruned weight's mask applied)."""
    return sum(t.numel() for t in effective_weights(model).values())


def nonzero_parameters(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(t)) for t in effective_weights(model).values())


def effective_weights(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter by name, with ``torch.nn.utils.prune``'s re-parametrisation
    (``weight_orig`` × ``weight_mask``) resolved to the weight the model uses.

    A parameter shared by several modules (tied weights: GPT-2's input embedding
    and output layer) is one parameter, listed once — under its first name, with
    the mask applied if any of its modules masks it — as ``model.parameters()``
    and Hugging Face's ``num_parameters()`` count it."""
    out: dict[str, Tensor] = {}
    seen: dict[int, str] = {}  # id(parameter) -> its key in out
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for name, p in module.named_parameters(recurse=False):
            key = f"{mod_name}.{name}" if mod_name else name
            masked = name.endswith("_orig") and hasattr(module, name[: -len("_orig")] + "_mask")
            if masked:
                key = key[: -len("_orig")]
                value = (p * getattr(module, name[: -len("_orig")] + "_mask")).detach()
            else:
                value = p.detach()
            if id(p) in seen:
                if masked:  # the masked use is the pruned weight
                    out[seen[id(p)]] = value
                continue
            seen[id(p)] = key
            out[key] = value
    return out


def flops_per_sample(model: nn.Module, example: Inputs) -> int:
    """FLOPs of one forward pass on one sample (``torch.utils.flop_counter``
    counts matmuls and convolutions as dense: a zero weight still costs its
    multiply-add). ``example``: a tensor of inputs or a dict of them (:mod:`.inputs`)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            call(model, first(example, 1))
    finally:
        model.train(was)
    return int(counter.get_total_flops())


def latency(models: Mapping[str, nn.Module], example: Inputs, *, runs: int = LATENCY_RUNS,
            warmup: int = WARMUP_RUNS, threads: int = 1) -> dict[str, dict[str, float]]:
    """``{name: {"p50": ms, "p95": ms, "mean": ms}}`` of ``model(example)`` for
    each model, timed interleaved in this process with ``threads`` CPU threads."""
    if runs < 1:
        raise ValueError(f"invalid runs={runs!r}: expected an integer >= 1")
    modes = {k: m.training for k, m in models.items()}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {k: [] for k in models}
    try:
        with torch.inference_mode():
            for m in models.values():
                m.eval()
                for _ in range(warmup):
                    call(m, example)
            items = list(models.items())
            for r in range(runs):
                # each round starts with the next model: no model is always the one timed first
                for name, m in items[r % len(items):] + items[: r % len(items)]:
                    start = time.perf_counter()
                    call(m, example)
                    times[name].append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(before)
        for k, m in models.items():
            m.train(modes[k])
    return {k: _percentiles(v) for k, v in times.items()}


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": statistics.median(ordered), "p95": q[94], "mean": statistics.fmean(ordered), "runs": len(ordered)}


def costs(model: nn.Module, example: Inputs) -> dict[str, Any]:
    """``parameters``, ``nonzero_parameters`` and ``flops`` of a model."""
    return {
        "parameters": parameters(model),
        "nonzero_parameters": nonzero_parameters(model),
        "flops": flops_per_sample(model, example),
    }
