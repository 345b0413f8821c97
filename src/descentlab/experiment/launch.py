"""Starting N processes in one torch.distributed group, on loopback, and supervising them.

``launch(fn, nproc, args)`` runs ``fn(rank, nproc, *args)`` in spawned processes and
returns their results, or raises the first real failure as one message (see
:mod:`descentlab.experiment.parallel` for the design).
"""

from __future__ import annotations

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

import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import UsageError

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
    from ..train.trainer import NonFiniteLossError

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
    from ..train.trainer import NonFiniteLossError

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


__all__ = ["DEFAULT_TIMEOUT", "GRACE", "LOOPBACK", "ParallelError", "launch"]
