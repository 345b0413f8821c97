"""What a fit() recorded: one row per logged training step or evaluation."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class History:
    """Rows of ``{"step", "seconds", ...}``: training rows (train_loss, lr, ...)
    and evaluation rows (val_loss, val_<metric>, ...).

    ``seconds`` is training time only (evaluation excluded), as AlgoPerf
    measures time-to-target.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.last_eval_step: int | None = None

    def log(self, step: int, seconds: float, values: Mapping[str, Any], evaluation: bool = False) -> None:
        self.rows.append({"step": step, "seconds": seconds, **values})
        if evaluation:
            self.last_eval_step = step

    def __len__(self) -> int:
        return len(self.rows)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of the rows that have ``key``."""
        pairs = [(r["step"], r[key]) for r in self.rows if key in r]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def evaluations(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if any(k.startswith("val_") for k in r)]

    def last(self, key: str, default: Any = None) -> Any:
        for row in reversed(self.rows):
            if key in row:
                return row[key]
        return default

    def best(self, key: str, mode: str = "min") -> float | None:
        values = [v for _, v in zip(*self.series(key)) if isinstance(v, float) and math.isfinite(v)]
        if not values:
            return None
        return min(values) if mode == "min" else max(values)

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            for key in row:
                seen.setdefault(key, None)
        return list(seen)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write all rows (empty cells where a row lacks a column), atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns(), restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, path)
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "last_eval_step": self.last_eval_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self.last_eval_step = state["last_eval_step"]
