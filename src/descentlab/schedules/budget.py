"""Schedule settings that depend on the run's length, filled in from the budget.

A schedule's length-dependent arguments default from the run's total number of
optimizer steps ``T`` when the user does not give them (``train`` and
``compare``; explicit settings always win):

=============================  ===========================================  ================================
argument                       default                                      why
=============================  ===========================================  ================================
total_steps (cosine,           T                                            the schedule ends with the run
warmup_cosine, one_cycle,
polynomial)
warmup_steps (warmup_cosine)   5% of T (at least 1)                         the usual few percent (Hugging Face
                                                                            examples, Goyal et al. 2017 use
                                                                            ~5 epochs of 90)
decay_steps (wsd)              20% of T after warmup (at least 1)           Hägele et al. 2024: a 20% cooldown
                                                                            matches cosine
stable_steps (wsd)             T − warmup_steps − decay_steps               the rest
step_size (step)               T / 3 (at least 1)                           two decays in the run
milestones (multistep)         [T/2, 3T/4]                                  He et al. 2016's ResNet schedule
=============================  ===========================================  ================================
"""

from __future__ import annotations

import math
from typing import Any

from .registry import REQUIRED

WARMUP_FRACTION = 0.05
DECAY_FRACTION = 0.2


def budget_defaults(name: str, total_steps: int | float, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with the missing length-dependent arguments of schedule ``name``
    filled in from ``total_steps`` (unchanged when the length is unknown).
    ``name`` may be any schedule (:mod:`.reference`)."""
    from .reference import ForeignSchedule, lookup

    spec = lookup(name)
    if isinstance(spec, ForeignSchedule):
        return spec.budget_defaults(total_steps, given)
    out = dict(given)
    if not math.isfinite(total_steps) or total_steps < 1:
        return out
    T = int(total_steps)

    def missing(key: str) -> bool:
        return key in spec.defaults and key not in out and spec.defaults[key] is REQUIRED

    if missing("total_steps"):
        out["total_steps"] = T
    if missing("warmup_steps"):
        out["warmup_steps"] = min(max(1, round(WARMUP_FRACTION * T)), max(0, out.get("total_steps", T) - 1))
    if spec.name == "wsd":
        warm = int(out.get("warmup_steps", 0))
        if missing("decay_steps"):
            out["decay_steps"] = max(1, round(DECAY_FRACTION * max(T - warm, 0)))
        if missing("stable_steps"):
            out["stable_steps"] = max(0, T - warm - int(out["decay_steps"]))
    if missing("step_size"):
        out["step_size"] = max(1, T // 3)
    if missing("milestones"):
        out["milestones"] = sorted({max(1, T // 2), max(1, (3 * T) // 4)})
    return out
