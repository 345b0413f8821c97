"""A strategy's workload-agnostic search space for the external-tuning ruleset, and its
quasi-random trials (Optuna's QMC sampler, as AlgoPerf's external tuning draws them).

The strategies file's ``space:`` field (one space for every workload of the suite)::

    - optimizer: adamw
      space:
        lr: {factor: 10}                 # the workload's default lr × [1/10, 10], log-uniform
        weight_decay: {low: 1.0e-5, high: 1.0e-1}       # log-uniform
        betas: [[0.9, 0.999], [0.95, 0.98]]             # a list: one of these values
        eps: {low: 1.0e-10, high: 1.0e-6, log: true}
        momentum: {low: 0.8, high: 0.99, log: false}    # any keyword of the optimizer

``lr`` may also be absolute, ``{low: 1e-4, high: 1e-1}``. The default space, for a strategy
without one, is ``lr: {factor: 10}``.

Decided: the lr is searched as a factor over a centre that the benchmark calibrates itself for
each strategy on each workload, by the same rule for every strategy (an lr range test:
:mod:`descentlab.benchmark.calibrate`), because an lr is comparable across workloads only
relative to the workload's scale, and a documented default exists for descentlab's own
optimizers but not for a user's. The factor range is the same for every workload, so the
space stays workload-agnostic; its resolved bounds per workload are :func:`resolved`. A range
``{low, high}`` is log-uniform unless ``log: false``.

Trials: study ``s`` draws K points from a scrambled Sobol sequence seeded with ``s``
(``optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=s)``). Optuna's QMC
sampler draws a study's first trial at random (it learns the space from it), so one
throwaway trial is drawn and discarded first: all K kept are quasi-random.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError

DEFAULT = {"lr": {"factor": 10.0}}
RANGE_KEYS = ("low", "high", "log")


def check(space: Any, where: str) -> dict[str, Any]:
    """The space, validated; one UsageError naming ``where``, the key and the value."""
    if space is None:
        return dict(DEFAULT)
    if not isinstance(space, dict) or not space:
        raise UsageError(f"{where}: invalid space {space!r}: expected a mapping such as {{lr: {{factor: 10}}}}")
    out: dict[str, Any] = {}
    for key, value in space.items():
        key = str(key)
        if key == "lr" and isinstance(value, dict) and "factor" in value:
            factor = value["factor"]
            if set(value) != {"factor"} or isinstance(factor, bool) or not isinstance(factor, (int, float)) \
                    or not factor > 1:
                raise UsageError(f"{where}: invalid space lr {value!r}: expected {{factor: F}} with F > 1")
            out[key] = {"factor": float(factor)}
        elif isinstance(value, dict):
            unknown = sorted(set(value) - set(RANGE_KEYS))
            low, high = value.get("low"), value.get("high")
            log = value.get("log", True)
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
            if unknown or not numbers or not low < high or not isinstance(log, bool) or (log and low <= 0):
                raise UsageError(f"{where}: invalid space {key} {value!r}: expected {{low, high}} with low < high "
                                 "(both > 0 when log-uniform; log: false for a uniform range)")
            out[key] = {"low": float(low), "high": float(high), "log": log}
        elif isinstance(value, list) and value:
            out[key] = {"choices": list(value)}
        else:
            raise UsageError(f"{where}: invalid space {key} {value!r}: expected {{low, high}}, a list of values, "
                             "or for lr {factor: F}")
    return out


def _distribution(spec: dict[str, Any]) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if "factor" in spec:
        return FloatDistribution(1.0 / spec["factor"], spec["factor"], log=True)
    if "choices" in spec:
        return CategoricalDistribution(list(range(len(spec["choices"]))))  # indices: values may be lists
    return FloatDistribution(spec["low"], spec["high"], log=spec["log"])


def trials(space: dict[str, Any], k: int, study: int) -> list[dict[str, Any]]:
    """Study ``study``'s ``k`` quasi-random points: ``[{key: value}]``, where ``lr`` is
    ``{"factor": f}`` for a relative lr (resolved on each workload by :func:`hparams`)."""
    import optuna
    from optuna.samplers import QMCSampler

    from ..engine.storage import quiet_optuna

    with quiet_optuna():
        sampler = QMCSampler(qmc_type="sobol", scramble=True, seed=study)
        search = optuna.create_study(sampler=sampler)
        dists = {key: _distribution(spec) for key, spec in space.items()}
        first = search.ask(dists)  # drawn at random: Optuna's QMC sampler learns the space from it
        search.tell(first, 0.0)
        out = []
        for _ in range(k):
            trial = search.ask(dists)
            search.tell(trial, 0.0)
            point = {}
            for key, spec in space.items():
                value = trial.params[key]
                if "factor" in spec:
                    point[key] = {"factor": float(value)}
                elif "choices" in spec:
                    point[key] = spec["choices"][int(value)]
                else:
                    point[key] = float(value)
            out.append(point)
    return out


def resolved(space: dict[str, Any], centre: float | None) -> dict[str, Any]:
    """The space on one workload: ``{param: {"low", "high", "log"}}`` (``lr: {factor: F}`` around
    ``centre``), ``{"choices": [...]}`` for a list."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        if "factor" in spec:
            out[key] = {"low": float(f"{centre / spec['factor']:.4g}"), "high": float(f"{centre * spec['factor']:.4g}"),
                        "log": True}
        else:
            out[key] = dict(spec)
    return out


def hparams(point: dict[str, Any], default_lr: float) -> tuple[float | None, dict[str, Any]]:
    """``(lr, other hyperparameters)`` of a trial's point on a workload whose lr centre for the
    strategy is ``default_lr`` (its calibrated centre: :mod:`.calibrate`)."""
    lr = point.get("lr")
    if isinstance(lr, dict):
        lr = default_lr * lr["factor"]
    return (float(lr) if lr is not None else None), {k: v for k, v in point.items() if k != "lr"}


def label(point: dict[str, Any]) -> str:
    """``"lr ×0.31, weight_decay 1.2e-04"``: a trial's point in the report."""
    parts = []
    for key, value in point.items():
        if isinstance(value, dict) and "factor" in value:
            parts.append(f"{key} ×{value['factor']:.3g}")
        elif isinstance(value, float) and math.isfinite(value):
            parts.append(f"{key} {value:.3g}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)
