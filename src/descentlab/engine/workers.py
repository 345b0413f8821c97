"""Worker processes on this machine that end the moment their parent does.

``run_workers(entry, payload, jobs, ...)`` starts ``jobs`` processes, forked from
multiprocessing's fork server (a clean single-threaded process, started once, that
has imported torch, optuna and descentlab: no connection or thread of the parent is
copied, and each worker starts at once). Each runs ``entry(payload, send)`` with
``threads`` torch threads, where ``send(kind, text)`` passes a line to the parent:
``"log"`` lines are printed as they come, the first ``"error"`` is raised there as
:class:`WorkerError` once all workers have ended.

Each worker also reads a pipe whose only writing end the parent holds: the read
ends the moment the parent dies, however it dies, and the worker SIGKILLs itself;
so a SIGKILLed command leaves no orphan that would hold runs RUNNING or finish them
behind a rerun's back. (The kernel's PR_SET_PDEATHSIG would watch the fork server,
the workers' parent, instead.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError

#: what the fork server imports once, so that the workers forked from it start at once
PRELOAD = ["descentlab.experiment.run", "descentlab.compare.runner", "descentlab.tune.study", "optuna",
           "sqlalchemy", "torch._dynamo"]


class WorkerError(RuntimeError):
    """A worker failed on something that is not the user's input (exit 1)."""


def cores() -> int:
    """The cores this process may run on (the default number of workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _die_with(parent: Any) -> None:
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            parent.recv()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="descentlab-watch-parent", daemon=True).start()


def _entry(entry: Callable[[Any, Callable[[str, str], None]], None], payload: Any, threads: int, conn: Any,
           parent: Any, inherited: Sequence[Any] = ()) -> None:
    import torch

    for lifeline in inherited:  # forked: the parent's writing ends, which must be the parent's alone
        lifeline.close()
    _die_with(parent)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # N workers with all cores' threads each would oversubscribe
    torch.set_num_threads(threads)
    try:
        entry(payload, lambda kind, text: conn.send((kind, text)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        text = str(exc) if isinstance(exc, (UsageError, WorkerError)) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            conn.send(("usage" if isinstance(exc, UsageError) else "error", text))
        conn.close()
        sys.exit(1)
    conn.close()


def run_workers(entry: Callable[[Any, Callable[[str, str], None]], None], payload: Any, jobs: int, *,
                threads: int = 1, log: Callable[[str], None] = print, name: str = "descentlab-worker",
                on_message: Callable[[str, str], None] | None = None, preload: Sequence[str] = PRELOAD,
                deaths_fatal: bool = True, fork: bool = False) -> int:
    """Run ``entry(payload, send)`` in ``jobs`` worker processes; return when all have ended.
    ``on_message(kind, text)``, when given, sees every message (also the log lines) first.
    A worker that dies without a word (SIGKILL, out of memory) is a WorkerError with
    ``deaths_fatal``, else a logged line; returns the number of such deaths.

    ``fork=True`` forks the workers from this process instead (milliseconds instead of
    the seconds a fork server takes to import torch; the workload is already loaded):
    for callers whose workers open their own database connections and touch none of
    the parent's (the copies stay referenced and unused until ``os._exit``)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if fork and "fork" in methods else "forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(list(preload))
    procs, waiting, errors, lifelines = [], {}, [], []
    try:
        for i in range(jobs):
            receive, send = ctx.Pipe(duplex=False)
            watch, lifeline = ctx.Pipe(duplex=False)  # this process keeps the writing end: its death is EOF there
            inherited = [lifeline, *lifelines] if ctx.get_start_method() == "fork" else []
            proc = ctx.Process(target=_entry, args=(entry, payload, threads, send, watch, inherited),
                               name=f"{name}-{i}", daemon=True)
            proc.start()
            send.close()
            watch.close()
            lifelines.append(lifeline)
            procs.append(proc)
            waiting[receive] = i
        while waiting:
            for conn in wait(list(waiting)):
                try:
                    kind, text = conn.recv()
                except (EOFError, OSError):
                    del waiting[conn]
                    continue
                if on_message is not None:
                    on_message(kind, text)
                if kind == "log":
                    log(text)
                elif kind in ("error", "usage"):
                    errors.append((kind, text))
        deaths = 0
        for i, proc in enumerate(procs):
            proc.join()
            if proc.exitcode and not errors:
                how = f"signal {-proc.exitcode}" if proc.exitcode < 0 else f"status {proc.exitcode}"
                if deaths_fatal:
                    errors.append(("error", f"worker {i} exited with {how}"))
                else:
                    deaths += 1
                    log(f"worker {i} died ({how}): its run goes back to the queue")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for lifeline in lifelines:
            lifeline.close()
    if errors:
        kind, text = errors[0]
        raise (UsageError if kind == "usage" else WorkerError)(text)
    return deaths
