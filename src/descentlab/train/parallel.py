"""Data-parallel training: ``descentlab train --nproc N``.

``run_parallel(config)`` trains as :func:`~descentlab.train.run.run_training`
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
import os
import pickle
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.connection import wait as wait_for
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import UsageError
from .callbacks import Callback
from .config import TrainConfig

#: seconds a collective (or the rendezvous) waits for the other ranks before failing
DEFAULT_TIMEOUT = 300.0
#: seconds the other ranks get to report after one failed, before they are stopped
GRACE = 10.0
LOOPBACK = "127.0.0.1"


class ParallelError(RuntimeError):
    """A data-parallel worker failed, died, or hung. ``details`` holds the
    workers' tracebacks."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# -- descentlab train --nproc N --------------------------------------------------------


def run_parallel(config: TrainConfig, *, log: Callable[[str], None] = _stderr,
                 timeout: float | None = None) -> dict[str, Any]:
    """Train ``config`` in ``config.nproc`` processes; return rank 0's summary."""
    from .run import resolve, resumed_config, run_training

    nproc = config.nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UsageError(f"invalid nproc={nproc!r}: expected an integer >= 1")
    if nproc == 1:
        return run_training(config, log=log)
    # Validate here, before any process starts: bad input is one line, exit 2.
    plan = resolve(resumed_config(config, log=lambda msg: None))
    n_train = len(plan["workload"].train[1])
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
    from .run import run_training

    if str(config.device).startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(rank)
        if config.device != "auto":
            config = dataclasses.replace(config, device=f"cuda:{rank}")
    else:  # share the cores instead of each rank using all of them
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    summary = run_training(config, log=_stderr if rank == 0 else lambda msg: None)
    return summary if rank == 0 else None


class SameStart(Callback):
    """Checks that every rank starts (or resumes) at the same loop position."""

    def on_fit_start(self, trainer) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        here = torch.tensor([trainer.step, trainer.epoch, trainer.batch_in_epoch], device=trainer.device)
        everywhere = [torch.empty_like(here) for _ in range(dist.get_world_size())]
        dist.all_gather(everywhere, here)
        if any(not torch.equal(t, everywhere[0]) for t in everywhere):
            where = ", ".join(f"rank {r}: step {int(t[0])}" for r, t in enumerate(everywhere))
            raise RuntimeError(f"the processes resumed from different checkpoints ({where})")


# -- starting and supervising the workers ----------------------------------------------


def launch(fn: Callable[..., Any], nproc: int, args: Sequence[Any] = (), *, backend: str = "gloo",
           timeout: float | None = None, grace: float = GRACE) -> list[Any]:
    """Run ``fn(rank, nproc, *args)`` in ``nproc`` spawned processes joined in one
    process group; return their results in rank order.

    ``fn`` must be importable (a module-level function). A collective waits at
    most ``timeout`` seconds; once a rank fails the others get ``grace``
    seconds to report, once a rank finishes the others get ``timeout``; then
    they are stopped. Raises the first real error (see the module docstring).
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    ctx = mp.get_context("spawn")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(max(128, nproc))
        port = listener.getsockname()[1]
        store = dist.TCPStore(LOOPBACK, port, is_master=True, wait_for_workers=False,
                              timeout=timedelta(seconds=timeout), master_listen_fd=listener.fileno(),
                              use_libuv=True)
    except BaseException:
        listener.close()
        raise
    listener.detach()  # the store owns the socket now
    procs, conns = [], []
    try:
        for rank in range(nproc):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_entry, args=(fn, rank, nproc, send, port, backend, timeout, tuple(args)),
                               name=f"descentlab-rank-{rank}", daemon=True)
            proc.start()
            send.close()  # the worker holds the only sending end: its exit reads as EOF here
            procs.append(proc)
            conns.append(receive)
        outcomes = _supervise(procs, conns, timeout, grace)
    finally:
        _stop(procs)
        for conn in conns:
            conn.close()
        del store
    errors = {rank: o for rank, o in outcomes.items() if o[0] != "ok"}
    if errors:
        raise _error(errors, nproc)
    return [outcomes[rank][1] for rank in range(nproc)]


def _supervise(procs, conns, timeout: float, grace: float) -> dict[int, tuple]:
    """Wait for every rank's outcome: ("ok", result), ("error", kind, text, tb),
    ("died", exitcode) or ("hung", seconds, first_rank)."""
    outcomes: dict[int, tuple] = {}
    waiting = {conn: rank for rank, conn in enumerate(conns)}
    deadline, first = None, None
    while waiting:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        for conn in wait_for(list(waiting), timeout=1.0 if left is None else min(left, 1.0)):
            rank = waiting.pop(conn)
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):  # it died without a word
                procs[rank].join(5)
                outcomes[rank] = ("died", procs[rank].exitcode)
            else:
                try:
                    outcomes[rank] = pickle.loads(message)
                except Exception as exc:  # noqa: BLE001
                    outcomes[rank] = ("error", type(exc).__name__, f"its result cannot be read: {exc}", "")
            now = time.monotonic()
            if first is None:
                first = (rank, now)
            wait_more = timeout if outcomes[rank][0] == "ok" else grace
            deadline = min(deadline if deadline is not None else now + wait_more, now + wait_more)
    for rank in waiting.values():
        outcomes[rank] = ("hung", time.monotonic() - first[1], first[0])
    return outcomes


def _stop(procs) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _entry(fn, rank: int, world: int, conn, port: int, backend: str, timeout: float, args: tuple) -> None:
    """A worker: join the group on the loopback rendezvous, run ``fn``, report."""
    loopback = _loopback_interface()
    if loopback is not None:  # gloo/NCCL listen on the loopback interface only
        os.environ["GLOO_SOCKET_IFNAME"] = loopback
        os.environ["NCCL_SOCKET_IFNAME"] = loopback
    try:
        store = dist.TCPStore(LOOPBACK, port, is_master=False, timeout=timedelta(seconds=timeout))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
        result = fn(rank, world, *args)
        # Plain pickle, not torch.multiprocessing's (which would put tensors in
        # shared memory that must outlive this process).
        conn.send_bytes(pickle.dumps(("ok", result)))
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        try:
            conn.send_bytes(pickle.dumps(("error", _kind(exc), str(exc), traceback.format_exc())))
        finally:
            conn.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)  # no teardown: the group may be broken
    conn.close()
    dist.destroy_process_group()


def _loopback_interface() -> str | None:
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


# How gloo and NCCL say that another rank went away (they raise RuntimeError).
_LOST_PEER = re.compile(r"gloo|nccl|connection (closed|reset)|broken pipe|timed out", re.IGNORECASE)


def _kind(exc: BaseException) -> str:
    from .trainer import NonFiniteLossError

    if isinstance(exc, NonFiniteLossError):
        return "diverged"
    if isinstance(exc, UsageError):
        return "usage"
    if isinstance(exc, dist.DistError) or _LOST_PEER.search(str(exc)):
        return "comm"
    if isinstance(exc, ValueError):
        return "value"
    if isinstance(exc, TypeError):
        return "type"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return type(exc).__name__


# The error to show when several ranks failed: the cause, not its echoes (a
# rank that lost its peer, a rank stopped because another failed).
_ORDER = {"diverged": 0, "usage": 1, "value": 1, "type": 1, "died": 3, "comm": 4, "interrupted": 5, "hung": 6}


def _error(errors: dict[int, tuple], nproc: int) -> Exception:
    from .trainer import NonFiniteLossError

    def order(item):
        rank, o = item
        kind = o[1] if o[0] == "error" else o[0]
        return _ORDER.get(kind, 2), rank

    rank, o = min(errors.items(), key=order)
    details = "\n".join(f"rank {r}: {o[3]}" for r, o in sorted(errors.items()) if o[0] == "error")
    who = f"rank {rank} of {nproc}"
    if o[0] == "died":
        code = o[1]
        how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with status {code}"
        return ParallelError(f"data-parallel {who} died: it {how}", details)
    if o[0] == "hung":
        return ParallelError(
            f"data-parallel {who} did not finish within {o[1]:.0f} s after rank {o[2]} was done; stopped it", details
        )
    kind, text = o[1], o[2]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if kind == "diverged":
        return NonFiniteLossError(f"training diverged: {text}")
    if kind in ("usage", "value", "type"):
        return {"usage": UsageError, "value": ValueError, "type": TypeError}[kind](text)
    if kind == "comm":
        return ParallelError(f"data-parallel {who} lost contact with the other processes: {line}", details)
    return ParallelError(f"data-parallel {who} failed: {kind}: {line}", details)


__all__ = ["DEFAULT_TIMEOUT", "ParallelError", "SameStart", "launch", "run_parallel"]
