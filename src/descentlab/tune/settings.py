"""A study's settings and its trials' counts: what the study's runner (:mod:`.study`)
and its report (:mod:`.tune_report`) both read. Below both, so that the runner calls
the report and the report never imports the runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import space as spaces

#: a trial's states, as Optuna names them
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs (picklable: spawned workers get a copy)."""

    workload: str
    metric: str
    direction: str
    trials: int
    storage: str
    study_name: str
    out: str
    seed: int
    steps: int | None
    epochs: int | None
    space: spaces.SearchSpace
    pruner: str
    max_resource: int | None
    n_train: int
    recipe_batch: Any
    data_dir: str | None
    threads: int | None
    heartbeat: int

    def record(self) -> dict[str, Any]:
        """What a rerun must share with the study it continues."""
        return json.loads(json.dumps({"workload": self.workload, "metric": self.metric, "direction": self.direction,
                                      "steps": self.steps, "epochs": self.epochs, "seed": self.seed,
                                      "space": self.space.to_dict()}))


def counts(trials: Any) -> dict[str, int]:
    """How many trials are in each state."""
    out = dict.fromkeys(STATES, 0)
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out
