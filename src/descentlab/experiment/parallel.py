"""Data-parallel training: ``descentlab train --nproc N``.

``run_parallel(config)`` trains as :func:`~descentlab.experiment.run.run_training`
does, in N processes, and returns the same summary. The design:

* **Processes.** N workers started with the "spawn" method, joined in one
  ``torch.distributed`` process group: "gloo" on the CPU, "nccl" when the
  run is on CUDA and there is a GPU per process (rank r uses ``cuda:r``).
* **Rendezvous, loopback only.** This process binds a socket to 127.0.0.1,
  port 0 (the OS picks a free port, and no other process can take it before
  the workers connect) and serves the TCPStore on it; gloo and NCCL are told
  to use the loopback interface. Nothing listens on any other address.
* **Same model, sharded batches.** Every rank builds the model from the same
  seed and sees the same global batches (same seeded order); the Trainer
  (``distributed=True``) wraps the model in DistributedDataParallel and rank
  r trains on rows ``r::N`` of each global batch, its loss weighted by its
  share of the rows, so the averaged gradient is the gradient of the global
  batch (up to float summation order). ``--batch-size`` stays the global
  batch size.
* **Rank 0 writes.** config.json, summary.json, metrics.csv, checkpoints/
  and runs.sqlite are written by rank 0 only — the same files as one process
  writes; checkpoints hold the plain module's weights, so they load in one
  process too. Other ranks write nothing. Every rank evaluates the full
  validation set on identical weights, so early stopping, plateau schedules
  and "best" decide the same everywhere; the loss is all-reduced before the
  non-finite check, so divergence stops every rank at the same step.
* **Resume.** Every rank reads rank 0's newest valid checkpoint (read-only)
  and the ranks check that they start from the same step.
* **Supervision.** Collectives time out (``timeout``), so a rank that hangs
  or dies makes the others fail instead of waiting forever; the parent waits
  on each worker's pipe and process, stops the rest when one fails, and
  raises the first real error as one message: NonFiniteLossError (training
  diverged), UsageError/ValueError/TypeError as raised, else ParallelError.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from ..errors import UsageError
from .config import TrainConfig

from .launch import ParallelError, launch
from .lock import hold
from .run import resolve, resumed_config, run_training


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# -- descentlab train --nproc N --------------------------------------------------------


def run_parallel(config: TrainConfig, *, log: Callable[[str], None] = _stderr,
                 timeout: float | None = None) -> dict[str, Any]:
    """Train ``config`` in ``config.nproc`` processes; return rank 0's summary."""
    nproc = config.nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UsageError(f"invalid nproc={nproc!r}: expected an integer >= 1")
    if nproc == 1:
        return run_training(config, log=log)
    # Validate here, before any process starts: bad input is one line, exit 2.
    plan = resolve(resumed_config(config, log=lambda msg: None))
    n_train = plan["workload"].num_examples("train")
    batch = plan["batch_size"]
    rows = n_train if batch == "full" else min(batch, n_train)
    if rows < nproc:
        raise UsageError(
            f"invalid batch_size={batch!r} for nproc={nproc}: the batch size is the global batch, split "
            f"across the processes, so it must be at least {nproc}"
        )
    backend, device = _placement(config.device, nproc, log)
    if device is not None:
        config = dataclasses.replace(config, device=device)
    if not config.out:
        return launch(_train, nproc, (config,), backend=backend, timeout=timeout)[0]
    with hold(config.out):  # this process holds the folder; rank 0, its worker, writes it
        return launch(_train, nproc, (config,), backend=backend, timeout=timeout)[0]


def _placement(device: str, nproc: int, log: Callable[[str], None]) -> tuple[str, str | None]:
    """The backend, and the device to run on when it is not ``device`` itself."""
    cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not cuda:
        return "gloo", None
    gpus = torch.cuda.device_count()
    if gpus >= nproc:
        return "nccl", None
    if device == "auto":
        log(f"note: nproc={nproc} needs a GPU per process for NCCL and found {gpus}; training on the CPU (gloo)")
        return "gloo", "cpu"
    raise UsageError(
        f"invalid nproc={nproc} for device={device!r}: data-parallel CUDA training needs a GPU per process "
        f"and found {gpus}; use --device cpu or fewer processes"
    )


def _train(rank: int, world: int, config: TrainConfig) -> dict[str, Any] | None:
    """One rank of ``descentlab train --nproc N`` (runs inside the process group)."""
    if str(config.device).startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(rank)
        if config.device != "auto":
            config = dataclasses.replace(config, device=f"cuda:{rank}")
    else:  # share the cores instead of each rank using all of them
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    summary = run_training(config, log=_stderr if rank == 0 else lambda msg: None)
    return summary if rank == 0 else None



def train(config: TrainConfig, *, log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """One configured training run: in this process, or with ``config.nproc > 1``
    in that many data-parallel processes. Returns the summary."""
    if config.nproc > 1 and not (dist.is_available() and dist.is_initialized()):
        return run_parallel(config, log=log)
    return run_training(config, log=log)


__all__ = ["ParallelError", "run_parallel", "train"]
