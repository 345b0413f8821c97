"""Data-parallel training: ``descentlab train --nproc N``, and ``descentlab
train`` under a torchrun the user starts.

The engine is torch's own (:mod:`descentlab.distributed.launch`): ``train
--nproc N`` starts torch's elastic agent in this process, which runs
``python -m descentlab.experiment.rank SPEC`` in N workers with torchrun's
environment; ``torchrun ... -m descentlab train ...`` runs this same training
in each of its workers (:func:`run_rank`, chosen by :func:`train` when the
environment says so). Either way:

* **One group.** Every worker joins the process group from the environment:
  "gloo" on the CPU, "nccl" when the run is on CUDA (local rank r uses
  ``cuda:r``). ``train --nproc N`` on one machine rendezvouses on 127.0.0.1
  only; ``--nnodes``/``--rdzv-endpoint`` use torch's c10d rendezvous.
* **Same model, sharded data.** Every rank builds the model from the same seed
  and draws the same global batches; rank r reads only its rows of each
  (:mod:`descentlab.train.data`), its loss weighted by its share, so the
  averaged gradient is the global batch's. ``--batch-size`` stays the global
  batch size. ``--strategy`` picks how the work is shared
  (:mod:`descentlab.distributed.strategy`).
* **Rank 0 writes** config.json, summary.json, metrics.csv, checkpoints/ and
  runs.sqlite — the same files as one process; checkpoints are in the
  one-process format whatever the strategy. Every rank evaluates the full
  validation set on identical weights, so early stopping, plateau schedules
  and "best" decide the same everywhere; the loss is all-reduced before the
  non-finite check, so divergence stops every rank at the same step.
* **Restarts.** With ``--max-restarts K`` the agent restarts the whole group
  when a worker fails, up to K times; the new workers resume from rank 0's
  newest checkpoint, and the run ends with the parameters of an uninterrupted
  one. Without restarts left, the job ends with the rank that failed first.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..distributed.launch import ParallelError, launch
from ..distributed.strategy import check_optimizer
from ..errors import UsageError
from .config import TrainConfig
from .lock import hold
from .run import resolve, resumed_config, run_training

#: seconds a collective waits for the other ranks before failing
TIMEOUT = 300.0


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def under_torchrun() -> bool:
    """True in a worker started by torchrun (or torch's elastic agent)."""
    env = os.environ
    return "TORCHELASTIC_RUN_ID" in env or all(k in env for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def train(config: TrainConfig, *, log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """One configured training run: in this process, as one rank of a torchrun
    job, or with ``config.nproc > 1`` in that many data-parallel processes.
    Returns the summary (rank 0's; other ranks of a torchrun job get theirs)."""
    if under_torchrun() and not (dist.is_available() and dist.is_initialized()):
        return run_rank(config, log=log)
    if (config.nproc > 1 or str(config.nnodes) != "1") and not (dist.is_available() and dist.is_initialized()):
        return run_parallel(config, log=log)
    return run_training(config, log=log)


# -- descentlab train --nproc N --------------------------------------------------------


def run_parallel(config: TrainConfig, *, log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Train ``config`` in ``config.nproc`` processes (per machine); return rank 0's summary."""
    nproc = config.nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UsageError(f"invalid nproc={nproc!r}: expected an integer >= 1")
    if nproc == 1 and str(config.nnodes) == "1":
        return run_training(config, log=log)
    # Validate here, before any process starts: bad input is one line, exit 2.
    plan = resolve(resumed_config(config, log=lambda msg: None))
    check_optimizer(config.strategy, plan["optimizer"])
    n_train = plan["workload"].num_examples("train")
    batch = plan["batch_size"]
    rows = n_train if batch == "full" else min(batch, n_train)
    if rows < nproc:
        raise UsageError(
            f"invalid batch_size={batch!r} for nproc={nproc}: the batch size is the global batch, split "
            f"across the processes, so it must be at least {nproc}"
        )
    device = _placement(config.device, nproc, log)
    if device is not None:
        config = dataclasses.replace(config, device=device)
    with tempfile.TemporaryDirectory(prefix="descentlab-rank-") as tmp:
        spec, result = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        errors = Path(tmp) / "errors"
        spec.write_text(json.dumps({"config": config.to_dict(), "result": str(result), "errors": str(errors)}))
        argv = [sys.executable, "-m", "descentlab.experiment.rank", str(spec)]
        run = {"nnodes": config.nnodes, "rdzv_endpoint": config.rdzv_endpoint, "max_restarts": config.max_restarts,
               "errors": errors}
        if config.out:
            with hold(config.out):  # this process holds the folder; rank 0, its worker, writes it
                launch(argv, nproc, **run)
        else:
            launch(argv, nproc, **run)
        if not result.exists():  # many machines: rank 0 ran on another one
            return {}
        outcome = json.loads(result.read_text())
    if outcome["status"] == "ok":
        return outcome["summary"]
    raise _decided(outcome["kind"], outcome["text"])


def _placement(device: str, nproc: int, log: Callable[[str], None]) -> str | None:
    """The device to run on when it is not ``device`` itself."""
    cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not cuda:
        return None
    gpus = torch.cuda.device_count()
    if gpus >= nproc:
        return None
    if device == "auto":
        log(f"note: nproc={nproc} needs a GPU per process for NCCL and found {gpus}; training on the CPU (gloo)")
        return "cpu"
    raise UsageError(
        f"invalid nproc={nproc} for device={device!r}: data-parallel CUDA training needs a GPU per process "
        f"and found {gpus}; use --device cpu or fewer processes"
    )


# -- one rank ---------------------------------------------------------------------------

#: errors every rank meets the same way: reported as they are, never restarted
_DECIDED = {"usage": UsageError, "value": ValueError, "type": TypeError}


def decided_kind(exc: BaseException) -> str | None:
    from ..train.trainer import NonFiniteLossError

    if isinstance(exc, NonFiniteLossError):
        return "diverged"
    if isinstance(exc, UsageError):
        return "usage"
    if isinstance(exc, ValueError):
        return "value"
    if isinstance(exc, TypeError):
        return "type"
    return None


def _decided(kind: str, text: str) -> Exception:
    from ..train.trainer import NonFiniteLossError

    if kind == "diverged":
        return NonFiniteLossError(text)
    return _DECIDED[kind](text)


def run_rank(config: TrainConfig, *, log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """This process's rank of a data-parallel run, from torchrun's environment."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local, local_world = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if world == 1:
        return run_training(dataclasses.replace(config, nproc=1), log=log)
    if config.nproc not in (1, local_world):
        raise UsageError(f"invalid nproc={config.nproc} under torchrun, which started {local_world} processes "
                         "on this machine: drop --nproc (torchrun's --nproc-per-node says how many)")
    config = dataclasses.replace(config, nproc=world)
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0 and config.out:
        config = dataclasses.replace(config, resume=True)  # a restarted group continues from its checkpoint
    cuda = str(config.device).startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local)
        if config.device != "auto":
            config = dataclasses.replace(config, device=f"cuda:{local}")
    else:  # share the cores instead of each rank using all of them
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // local_world)))
    from datetime import timedelta

    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=TIMEOUT))
    try:
        return run_training(config, log=log if rank == 0 else lambda msg: None)
    finally:
        gc.collect()  # the run's DDP/FSDP objects go while the group they use is still there
        dist.destroy_process_group()


__all__ = ["ParallelError", "run_parallel", "run_rank", "train", "under_torchrun"]
