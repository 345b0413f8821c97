"""The learning-rate range test (Smith 2017), leaving everything as it found it.

``lr_find(model, optimizer, loss_fn, data)`` trains ``num_steps`` steps while the
lr grows exponentially from ``start_lr`` to ``end_lr``, records each batch's
loss, stops once the debiased smoothed loss exceeds ``diverge`` × its minimum
(or turns non-finite), and reads a suggestion off the curve with a rule of
:mod:`descentlab.tune.rules`. With ``sweeps=K`` it runs K sweeps from the same
starting point, each over a different data order, and suggests the geometric
median of their suggestions; the spread across the sweeps is the confidence.

Afterwards the model (parameters, buffers, gradients, train/eval mode), the
optimizer (state and param groups, lr included), a GradScaler, the torch,
CUDA, Python and NumPy random states, and the data order (a DataLoader's
generator, a sampler's epoch) are bitwise what they were. The starting point is
kept in a temporary file, not in memory, and restored after the optimizer
state and gradients are freed: the sweep's peak memory is a training step's
(benchmarks/lr_find_memory.py measures it).

Parameter groups: with ``groups="together"`` every group's lr is scaled by the
same factor (their ratios kept) and the suggestion is group 0's lr, each
group's in ``groups``; with ``groups="each"`` each group is swept alone, the
others held at their current lr. ``"auto"`` (default) is "each" when the
groups' lrs differ, else "together".

What "lr" means is the optimizer's own ``lr`` argument. For Prodigy and
Adadelta it is a multiplier of a step size they estimate themselves (their
authors' default is 1.0); for schedule-free AdamW it is the step size of the
base sequence, whose useful values run higher than AdamW's (Defazio et al.
2024 use 1-10×): the test measures each the same way, and the result's
``note`` says which kind of lr was swept.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..train.batch import forward, to_device
from ..train.data import as_batches
from . import rules as rules_mod

#: what the swept lr is, for optimizers where it is not a plain step size
NOTES = {
    "prodigy": "lr is a multiplier of Prodigy's own step-size estimate d (the authors' default: 1.0)",
    "adadelta": "lr is a multiplier of Adadelta's own step size (the usual value: 1.0)",
    "adamw_schedulefree": "lr is the step size of schedule-free AdamW's base sequence (often 1-10x AdamW's)",
    "lamb": "lr scales a step relative to each tensor's norm (trust ratio)",
    "lars": "lr scales a step relative to each tensor's norm (trust ratio)",
    "adafactor": "lr scales a relative step, capped at 1/sqrt(t)",
}


@dataclass
class LRFindResult:
    """A range test's outcome; :meth:`to_dict` is ``lr_find.json``."""

    suggested_lr: float
    rule: str
    lrs: list[float]  # the first sweep's lrs (up to its stop)
    losses: list[float]  # its debiased smoothed losses
    raw_losses: list[float]
    confidence: dict[str, Any]
    candidates: dict[str, float]  # every rule's suggestion (median over the sweeps)
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    optimizer: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(start_lr: float, end_lr: float, num_steps: int, sweeps: int, diverge: float, beta: float,
           groups: str) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"invalid {name}={value!r}: expected a finite number > 0")
    if start_lr >= end_lr:
        raise ValueError(f"invalid start_lr={start_lr!r} >= end_lr={end_lr!r}: expected start_lr < end_lr")
    for name, value, low in (("num_steps", num_steps, 10), ("sweeps", sweeps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"invalid {name}={value!r}: expected an integer >= {low}")
    if not isinstance(diverge, (int, float)) or not diverge > 1:
        raise ValueError(f"invalid diverge={diverge!r}: expected a number > 1")
    if not isinstance(beta, (int, float)) or not 0 <= beta < 1:
        raise ValueError(f"invalid smooth={beta!r}: expected a number in [0, 1)")
    if groups not in ("auto", "together", "each"):
        raise ValueError(f"invalid groups={groups!r}: expected 'auto', 'together' or 'each'")


# -- keeping the starting point --------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def _data_state(data: Any) -> list[tuple[Any, str, Any]]:
    """What iterating ``data`` may change: a DataLoader's or sampler's generator, a sampler's epoch."""
    saved = []
    for owner in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None),
                  getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        if owner is None:
            continue
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator):
            saved.append((gen, "generator", gen.get_state()))
        if isinstance(getattr(owner, "epoch", None), int):
            saved.append((owner, "epoch", owner.epoch))
    return saved


def _set_data_state(saved: list[tuple[Any, str, Any]]) -> None:
    for owner, kind, value in saved:
        if kind == "generator":
            owner.set_state(value)
        else:
            owner.epoch = value


class _Snapshot:
    """The model's tensors and the optimizer's state, in a temporary file."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, folder: Path):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.path = folder / "start.pt"
        self.training = {name: m.training for name, m in model.named_modules()}
        tensors = {f"p.{n}": p.detach() for n, p in model.named_parameters(remove_duplicate=False)}
        tensors.update({f"b.{n}": b for n, b in model.named_buffers(remove_duplicate=False) if b is not None})
        grads = {n: p.grad for n, p in model.named_parameters(remove_duplicate=False) if p.grad is not None}
        torch.save({"tensors": tensors, "grads": grads, "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None}, self.path)

    def restore(self) -> None:
        # free what the sweep built before loading the copy: the peak stays a training step's
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.state.clear()
        for p in self.model.parameters():
            p.grad = None
        saved = torch.load(self.path, weights_only=True, map_location="cpu")
        params = dict(self.model.named_parameters(remove_duplicate=False))
        buffers = dict(self.model.named_buffers(remove_duplicate=False))
        with torch.no_grad():
            for key, value in saved.pop("tensors").items():
                kind, name = key.split(".", 1)
                (params if kind == "p" else buffers)[name].copy_(value)
            for name, grad in saved.pop("grads").items():
                params[name].grad = grad.to(params[name].device)
        self.optimizer.load_state_dict(saved.pop("optimizer"))
        if self.scaler is not None:
            self.scaler.load_state_dict(saved.pop("scaler"))
        for name, m in self.model.named_modules():
            m.training = self.training[name]


@contextmanager
def preserved(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None,
              data: Any = None) -> Iterator[Callable[[], None]]:
    """Run a block that trains; afterwards everything is as before (see the module
    docstring). Yields ``reset()``, which puts model and optimizer back mid-block."""
    rng, data_state = _rng_state(), _data_state(data)
    with tempfile.TemporaryDirectory(prefix="descentlab-lr-find-") as folder:
        snapshot = _Snapshot(model, optimizer, scaler, Path(folder))
        try:
            yield snapshot.restore
        finally:
            snapshot.restore()
            _set_rng_state(rng)
            _set_data_state(data_state)


# -- one sweep ----------------------------------------------------------------------------


def _set_lr(group: dict[str, Any], lr: float) -> None:
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


def _batches(data: Any, batch_size: Any, seed: int) -> Iterator[Any]:
    """Endless batches: epoch after epoch of ``data`` (tensors and Datasets in the seeded order)."""
    source = as_batches(data, batch_size, seed)
    epoch = 0
    while True:
        empty = True
        for batch in source.epoch(epoch):
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_find: the data gave no batches")
        epoch += 1


def _sweep(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any, batches: Iterator[Any],
           lrs: Sequence[float], base: dict[int, float], *, scaler: Any, precision: str, target_key: str | None,
           diverge: float, beta: float, clip_norm: float | None) -> dict[str, Any]:
    """Train one step per lr; ``base[i]`` is group i's lr as a multiple of the swept lr."""
    device = next(model.parameters()).device
    model.train()
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()  # schedule-free: train at the training point
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
                if precision != "fp32" else None)
    raw: list[float] = []
    smoothed: list[float] = []
    avg, best, stop = 0.0, math.inf, "end_lr"
    for t, lr in enumerate(lrs, start=1):
        for i, mult in base.items():
            _set_lr(optimizer.param_groups[i], lr * mult)
        batch = to_device(next(batches), device)
        if autocast is not None:
            with autocast:
                loss, _ = forward(model, batch, loss_fn, target_key)
        else:
            loss, _ = forward(model, batch, loss_fn, target_key)
        value = float(loss.detach())
        if not math.isfinite(value):
            stop = "non-finite loss"
            break
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        avg = beta * avg + (1 - beta) * value
        s = avg / (1 - beta**t)
        raw.append(value)
        smoothed.append(s)
        best = min(best, s)
        if t > 1 and s > diverge * best:
            stop = "diverged"
            break
    return {"lrs": list(lrs[: len(raw)]), "losses": smoothed, "raw_losses": raw, "stop": stop}


def _suggest(sweep: dict[str, Any], rule: str) -> dict[str, float]:
    """Every rule's suggestion on one sweep (NaN where a curve is too short to read)."""
    out = {}
    for name, fn in rules_mod.RULES.items():
        try:
            out[name] = fn(sweep["lrs"], sweep["losses"], sweep["raw_losses"]) if len(sweep["lrs"]) >= 5 else math.nan
        except (ValueError, IndexError):
            out[name] = math.nan
    return out


def _combine(sweeps: list[dict[str, Any]], rule: str) -> tuple[dict[str, float], dict[str, Any]]:
    candidates = {}
    for name in rules_mod.RULES:
        values = [s["candidates"][name] for s in sweeps if math.isfinite(s["candidates"][name])]
        candidates[name] = rules_mod.geometric_median(values) if values else math.nan
    mine = [s["candidates"][rule] for s in sweeps if math.isfinite(s["candidates"][rule])]
    confidence: dict[str, Any] = {"sweeps": len(sweeps), "suggestions": mine}
    if len(mine) >= 2:
        logs = np.log10(mine)
        confidence.update(spread=float(max(mine) / min(mine)), log10_std=float(np.std(logs, ddof=1)))
    else:
        confidence.update(spread=None, log10_std=None,
                          note="one sweep: run with sweeps >= 2 for the spread across data orders")
    return candidates, confidence


def lr_find(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Any, data: Any, *,
            batch_size: int | str | None = None, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, rule: str = rules_mod.DEFAULT_RULE, sweeps: int = 1, seed: int = 0,
            smooth: float = 0.98, diverge: float = 4.0, scaler: Any = None, precision: str = "fp32",
            target_key: str | None = None, groups: str = "auto", clip_norm: float | None = None,
            optimizer_name: str | None = None) -> LRFindResult:
    """Run the range test; return the suggestion (see the module docstring).

    ``data``: tensors ``(x, y)`` or a map-style Dataset (batched with
    ``batch_size`` in a seeded order, a different one per sweep), or any
    iterable of batches (a DataLoader), cycled as needed. ``loss_fn=None``: the
    model returns its own loss (as in the Trainer).
    """
    _check(start_lr, end_lr, num_steps, sweeps, diverge, smooth, groups)
    rules_mod.get(rule)
    lrs = [start_lr * (end_lr / start_lr) ** (i / (num_steps - 1)) for i in range(num_steps)]
    before = [float(g["lr"]) for g in optimizer.param_groups]
    if groups == "auto":
        groups = "each" if len(set(before)) > 1 else "together"
    if groups == "together":
        ref = before[0] if before[0] > 0 else 1.0
        plans = [(None, {i: (lr / ref if before[0] > 0 else 1.0) for i, lr in enumerate(before)})]
    else:
        plans = [(i, {i: 1.0}) for i in range(len(before))]
    kw = {"scaler": scaler, "precision": precision, "target_key": target_key, "diverge": diverge, "beta": smooth,
          "clip_norm": clip_norm}
    per_plan = []
    with preserved(model, optimizer, scaler, data) as reset:
        for index, base in plans:
            runs = []
            for k in range(sweeps):
                if runs or per_plan:
                    reset()
                batches = _batches(data, batch_size, seed + k)
                run = _sweep(model, optimizer, loss_fn, batches, lrs, base, **kw)
                run["candidates"] = _suggest(run, rule)
                runs.append(run)
            candidates, confidence = _combine(runs, rule)
            per_plan.append((index, base, runs, candidates, confidence))

    # the headline: the group that holds the optimizer's own lr (muon: the Muon part), else group 0
    default_lr = getattr(optimizer, "defaults", {}).get("lr")
    primary = next((i for i, lr in enumerate(before) if default_lr is not None and lr == float(default_lr)), 0)
    first_index, first_base, first_runs, first_candidates, first_confidence = (
        per_plan[primary] if plans[0][0] is not None else per_plan[0])
    group_rows = []
    for index, base, runs, candidates, confidence in per_plan:
        if index is None:  # together: each group's lr is the suggestion times its ratio
            group_rows = [{"index": i, "lr_before": before[i], "suggested_lr": candidates[rule] * mult}
                          for i, mult in base.items()]
        else:
            group_rows.append({"index": index, "lr_before": before[index], "suggested_lr": candidates[rule],
                               "confidence": confidence, "candidates": candidates})
    suggested = first_candidates[rule] * (first_base[primary] if first_index is None else 1.0)
    if not math.isfinite(suggested):
        raise ValueError(
            f"lr_find: the loss curve is too short to read (the sweep stopped after {len(first_runs[0]['lrs'])} "
            f"steps: {first_runs[0]['stop']}); lower start_lr or raise num_steps"
        )
    sweep0 = first_runs[0]
    name = optimizer_name or getattr(optimizer, "name", None)
    return LRFindResult(
        suggested_lr=float(suggested), rule=rule, lrs=sweep0["lrs"], losses=sweep0["losses"],
        raw_losses=sweep0["raw_losses"], confidence=first_confidence, candidates=first_candidates,
        sweeps=[{k: v for k, v in run.items()} for run in first_runs], groups=group_rows if len(before) > 1 else [],
        settings={"start_lr": start_lr, "end_lr": end_lr, "num_steps": num_steps, "sweeps": sweeps, "seed": seed,
                  "smooth": smooth, "diverge": diverge, "groups": groups, "batch_size": batch_size,
                  "primary_group": primary},
        optimizer=name if isinstance(name, str) else None, note=NOTES.get(name, "") if isinstance(name, str) else "",
    )
