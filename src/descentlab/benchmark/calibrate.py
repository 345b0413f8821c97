"""What the benchmark measures before its runs, the same way for every strategy: each strategy's
lr centre on each workload (the search-space rule) and its cost per step (reference time).

**The lr centre** (the external ruleset's space rule). A strategy's ``lr: {factor: F}`` is
searched log-uniformly over ``[c / F, c × F]`` around a centre ``c`` that the benchmark finds
itself, for every strategy alike — registered, torch's, pytorch-optimizer's or the user's
own: the lr range test (Smith 2017, "Cyclical learning rates for training neural networks";
:func:`descentlab.tune.range_test.lr_find`, the same test as ``descentlab lr-find``) of the
strategy on the base workload's seed-0 model, :data:`RANGE_STEPS` steps from 1e-6 to 10 at
the workload's batch size, its suggestion (the default rule) rounded to :data:`GRID` points
per decade so that two implementations of one algorithm, whose losses differ in the last
bits, get the same centre. Decided over the earlier rule (a factor over each workload's
documented default lr, which a user's optimizer does not have: it was searched around its
constructor default on every workload, and ``torch.optim:AdamW`` scored 0 beside descentlab's
``adamw``) and over one wide absolute space for all (lrs good for SGD and for Lion lie four
decades apart, and five trials spread over eight decades rarely land in either's good range).
A range test that cannot be read (the loss never falls) leaves the centre at the strategy's
default lr, and the figures say so.

**The cost per step** (reference time). Seconds measured while other work shares the machine
move with that work: the default benchmark took 126 s idle and 8 min 53 s beside other jobs.
So the time that scores is *reference time*: a run's steps to target × its strategy's
calibrated cost per step on that workload. The costs are measured here, in one process with
one torch thread (as each worker runs), by :data:`ROUNDS` rounds that each time every
strategy's training steps (forward, backward, optimizer step, schedule: the Trainer's timed
step) back to back, in an order that rotates by round; a strategy's cost is the baseline
strategy's cost (the minimum over the rounds: the least disturbed) × the median over the
rounds of its ratio to the baseline measured in the same round. Load that slows the machine
slows both sides of a ratio alike, so the ratios — and with them the scores, which only
compare times on one workload — do not depend on the neighbours. The raw seconds of every
run are kept beside it (times.csv ``seconds_to_target``; benchmark.json ``times_raw``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

RANGE_STEPS = 100
RANGE_START, RANGE_END = 1e-6, 10.0
GRID = 10  # lr centres are rounded to 10^(k/GRID)
ROUNDS = 9
ROUND_SECONDS = 0.05  # each strategy's share of a round: enough steps for the clock
WARMUP = 3


def snap(lr: float) -> float:
    """``lr`` rounded to the nearest of :data:`GRID` log-spaced points per decade."""
    return float(f"{10 ** (round(math.log10(lr) * GRID) / GRID):.3g}")


def lr_centre(wl: Any, strategy: Any, batch: Any) -> dict[str, Any]:
    """``{"lr": centre, "source": ...}``: the range test's suggestion for ``strategy`` on ``wl``."""
    import torch

    from ..experiment.single import _build, lr_and_source
    from ..tune.range_test import lr_find

    default = lr_and_source(strategy, wl)[0]
    model, optimizer, _ = _build(wl, strategy, 0, RANGE_STEPS)
    with torch.random.fork_rng(devices=[]):
        try:
            result = lr_find(model, optimizer, wl.loss_fn, wl.train, batch_size=batch, seed=0,
                             start_lr=RANGE_START, end_lr=RANGE_END, num_steps=RANGE_STEPS,
                             target_key=wl.target_key, clip_norm=strategy.clip_norm,
                             optimizer_name=strategy.optimizer)
        except (ValueError, RuntimeError) as exc:
            return {"lr": default, "source": f"default lr (range test unreadable: {str(exc).splitlines()[0][:120]})"}
    if not (isinstance(result.suggested_lr, float) and math.isfinite(result.suggested_lr) and result.suggested_lr > 0):
        return {"lr": default, "source": "default lr (range test gave no suggestion)"}
    return {"lr": snap(result.suggested_lr), "source": f"range test ({result.rule})",
            "suggested": result.suggested_lr}


def _steps_for(trainer: Any, train: Any, n: int) -> float:
    """Train ``n`` more steps; the Trainer's timed seconds of them, per step."""
    before, start = trainer.train_seconds, trainer.step
    trainer.should_stop, trainer.stop_reason = False, None
    trainer.fit(train, None, max_steps=start + n)
    done = trainer.step - start
    return (trainer.train_seconds - before) / max(done, 1)


def step_costs(wl: Any, strategies: Sequence[Any], batch: Any, *, baseline: str, rounds: int = ROUNDS,
               device: str = "auto", log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """``{"seconds_per_step": {label: s}, "ratios": {label: r}, "rounds": [...]}`` on ``wl`` (see the
    module's docstring). ``baseline``: the label every ratio is to."""
    import torch

    from ..experiment.single import _trainer
    from ..train.trainer import NonFiniteLossError

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        long = 10 ** 9  # no schedule ends within the calibration
        trainers = {s.label: _trainer(wl, s, 0, long, batch_size=batch, eval_every=None, device=device)
                    for s in strategies}
        counts, diverged = {}, set()
        for label, t in trainers.items():  # one-time costs, then the steps that take ROUND_SECONDS
            try:
                _steps_for(t, wl.train, WARMUP)
                per = _steps_for(t, wl.train, WARMUP)
            except NonFiniteLossError:
                diverged.add(label)
                per = math.inf
            counts[label] = max(2, min(500, int(ROUND_SECONDS / per))) if math.isfinite(per) and per > 0 else 2
        per_round: list[dict[str, float]] = []
        labels = list(trainers)
        for r in range(rounds):
            order = labels[r % len(labels):] + labels[:r % len(labels)]
            got = {}
            for label in order:
                try:
                    got[label] = _steps_for(trainers[label], wl.train, counts[label])
                except NonFiniteLossError:  # the cost of a step does not depend on its values: start afresh
                    trainers[label] = _trainer(wl, next(s for s in strategies if s.label == label), 0, long,
                                               batch_size=batch, eval_every=None, device=device)
                    _steps_for(trainers[label], wl.train, WARMUP)
                    got[label] = _steps_for(trainers[label], wl.train, counts[label])
            per_round.append(got)
    finally:
        torch.set_num_threads(threads)
    base = min(r[baseline] for r in per_round)
    ratios = {label: statistics.median(r[label] / r[baseline] for r in per_round) for label in labels}
    costs = {label: base * ratios[label] for label in labels}
    log(f"  {wl.name}: seconds per step " + ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in costs.items()))
    return {"seconds_per_step": costs, "ratios": ratios, "baseline": baseline, "steps_per_round": counts,
            "rounds": per_round}




def calibrate(entries: Sequence[Any], strategies: Sequence[Any], *, ruleset: str, baseline: str,
              data_dir: str | None = None, device: str = "auto",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every entry's calibration: ``{"costs": {label: {entry: {part: seconds per step}}},
    "centres": {label: {entry: lr}} (external ruleset), "figures": {...}}``."""
    from .execute import batch_size

    costs: dict[str, dict[str, dict[str, float]]] = {s.label: {} for s in strategies}
    centres: dict[str, dict[str, float]] = {s.label: {} for s in strategies}
    figures: dict[str, Any] = {"costs": {}, "centres": {}}
    start = time.perf_counter()
    log(f"calibrating: each strategy's cost per step on each workload ({ROUNDS} interleaved rounds)"
        + (" and its lr centre (an lr range test)" if ruleset == "external" else ""))
    for e in entries:
        for part, _ in e.parts():
            wl = e.workload(part, data_dir)
            got = step_costs(wl, strategies, batch_size(e, wl), baseline=baseline, device=device, log=log)
            figures["costs"][f"{e.name}/{part}"] = got
            for label, cost in got["seconds_per_step"].items():
                costs[label].setdefault(e.name, {})[part] = cost
        if ruleset == "external":
            wl = e.workload("base", data_dir)
            for s in strategies:
                got = lr_centre(wl, s, batch_size(e, wl))
                centres[s.label][e.name] = got["lr"]
                figures["centres"][f"{e.name}/{s.label}"] = got
            log(f"  {e.name}: lr centres " + ", ".join(f"{s.label} {centres[s.label][e.name]:.3g}" for s in strategies))
    figures["seconds"] = time.perf_counter() - start
    return {"costs": costs, "centres": centres if ruleset == "external" else {}, "figures": figures}
