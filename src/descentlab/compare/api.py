"""``descentlab.compare(...)``: the comparison as a Python call.

    >>> import descentlab
    >>> result = descentlab.compare("digits-mlp", ["sgd", "adam"], steps=300, seeds=2, out="runs/cmp")
    >>> result.rows[0]["best_metric"], result.report

``workload`` is a built-in name, a ``file.py:FUNC`` / ``module:FUNC``
reference, a :class:`~descentlab.workloads.Workload` or a factory
``fn(seed=...)``; ``strategies`` are optimizer names, strategy dicts as in the
strategies file (``{"name": ..., "optimizer": ..., "lr": ..., "schedule": ...}``)
or :class:`~descentlab.compare.Strategy` objects. The ``descentlab compare``
command calls this and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .runner import run_comparison


@dataclass(frozen=True)
class ComparisonResult:
    """What a comparison wrote: ``rows`` (the summary.csv rows, as dicts),
    ``report`` (the path of report.html) and ``out`` (the folder)."""

    rows: list[dict[str, Any]]
    report: Path
    out: Path
    storage: str = ""
    name: str = ""
    summary_csv: Path = field(init=False)
    runs_db: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary_csv", self.out / "summary.csv")
        object.__setattr__(self, "runs_db", self.out / "runs.sqlite")


def _default_out(workload: Any) -> str:
    name = workload if isinstance(workload, str) else getattr(workload, "name", None) or getattr(
        workload, "__name__", "workload")
    if isinstance(name, str) and ":" in name:  # file.py:FUNC -> FUNC
        name = name.rpartition(":")[2]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(name)).strip("-.") or "workload"
    return f"runs/compare-{safe}"


def compare(
    workload: Any,
    strategies: Sequence[Any] | str,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    seeds: int = 1,
    target: float | None = None,
    out: str | Path | None = None,
    schedule: str | None = None,
    schedule_kwargs: dict[str, Any] | None = None,
    batch_size: int | str | None = None,
    eval_every: int | None = None,
    tune_lr: bool | str = False,
    overwrite: bool = False,
    data_dir: str | None = None,
    device: str = "auto",
    tensorboard: str | Path | None = None,
    progress: bool = True,
    jobs: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ComparisonResult:
    """Compare ``strategies`` on ``workload`` with equal budgets; write summary.csv,
    runs.sqlite, the plots and report.html into ``out`` (default
    ``runs/compare-<workload>``) and return what was written.

    The budget is ``steps`` or ``epochs`` (default: the workload's recipe);
    ``seeds`` runs of each strategy (seed k: the same initialisation and data
    order for every strategy); ``target``: the validation metric level for
    time-to-target (default: the built-in workload's documented one, none for
    a user's). ``schedule``/``schedule_kwargs`` apply to every strategy without
    its own; length-dependent settings default from the budget. ``tune_lr``
    tunes each strategy's lr first with the same budget: ``"lr-find"`` (the range
    test), ``"sweep"`` (a short grid), or True for the measured default. ``tensorboard``: also write TensorBoard
    event files there, one subfolder per run. ``jobs``: runs at once, each in a worker
    process with one torch thread (None: one per core when the workload is given by name
    or reference, else 1); the numbers are those of ``jobs=1``. ``storage``: an SQLAlchemy
    URL that holds the comparison (named ``name``, default ``compare-<workload>``) and its
    runs, instead of ``out/runs.sqlite``; workers elsewhere join it with ``descentlab worker``.
    Called again after an interruption, the same call continues the comparison. Bad input
    raises UsageError (ValueError) naming it, before anything is written.
    """
    if steps is not None and epochs is not None:
        raise UsageError("give steps or epochs, not both")
    result = run_comparison(
        workload, strategies, out=out if out is not None else _default_out(workload), seeds=seeds, steps=steps,
        epochs=epochs, target=target, batch_size=batch_size, eval_every=eval_every, tune=tune_lr,
        overwrite=overwrite, data_dir=data_dir, device=device, progress=progress, schedule=schedule,
        schedule_kwargs=schedule_kwargs, tensorboard=str(tensorboard) if tensorboard is not None else None,
        jobs=jobs, storage=storage, name=name, log=log if log is not None else _quiet,
    )
    return ComparisonResult(rows=result["rows"], report=Path(result["report"]), out=Path(result["out"]),
                            storage=result["storage"], name=result["name"])


def _quiet(message: str) -> None:
    import sys

    print(message, file=sys.stderr)
