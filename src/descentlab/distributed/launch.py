"""Starting a data-parallel job on torch's own engine: the elastic agent of
``torch.distributed.run`` (torchrun), called in this process.

``launch(argv, nproc)`` runs the program ``argv`` in ``nproc`` worker processes
on this machine, as ``torchrun --nproc-per-node nproc argv...`` would: each
worker gets torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``, ``TORCHELASTIC_RESTART_COUNT``, ...) and joins
the process group from it, exactly as under a torchrun the user starts. The
agent supervises them: when one fails it stops the others and, with
``max_restarts=K``, starts the whole group again up to K times (the workers
then resume from their newest checkpoint); without restarts left it gives up
and this function raises :class:`ParallelError` naming the rank that failed
first and how.

Rendezvous: on one machine (``nnodes="1"`` and no endpoint) the loopback
rendezvous of :mod:`descentlab.distributed.rendezvous` on a free port, and
gloo told to use the loopback interface, so nothing listens beyond 127.0.0.1.
For many machines, torch's "c10d" rendezvous at ``rdzv_endpoint`` (HOST:PORT,
the same on every machine), with ``nnodes`` as torchrun takes it ("2", or
"1:4" for an elastic range).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import rendezvous

#: seconds between the agent's looks at its workers
MONITOR_INTERVAL = 0.2
#: seconds the other workers get to stop (SIGTERM) before SIGKILL, once one has failed
SHUTDOWN_TIMEOUT = 10


class ParallelError(RuntimeError):
    """A data-parallel worker failed or died and no restart was left."""


def parse_nnodes(nnodes: str | int) -> tuple[int, int]:
    """torchrun's ``--nnodes``: "N" or "MIN:MAX"."""
    text = str(nnodes)
    parts = text.split(":")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or low < 1 or high < low:
        raise UsageError(f"invalid nnodes={nnodes!r}: expected N or MIN:MAX with 1 <= MIN <= MAX")
    return low, high


def check_endpoint(endpoint: str) -> str:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"invalid rdzv_endpoint={endpoint!r}: expected HOST:PORT, e.g. node0.example:29400")
    return endpoint


def loopback_interface() -> str | None:
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards (the agent's
    workers inherit this process's environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def launch(argv: Sequence[str], nproc: int, *, nnodes: str | int = "1", rdzv_endpoint: str | None = None,
           rdzv_id: str | None = None, max_restarts: int = 0, env: Mapping[str, str] | None = None,
           errors: str | Path | None = None) -> None:
    """Run ``argv`` (program and arguments) in ``nproc`` workers under torch's
    elastic agent; return when every worker has exited 0. Raises ParallelError
    (see the module docstring) otherwise. ``errors``: the folder where the
    workers record their exceptions (descentlab.experiment.rank), read to name
    the real error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    low, high = parse_nnodes(nnodes)
    standalone = rdzv_endpoint is None
    # an endpoint on this machine's loopback: the loopback rendezvous, with agents sharing its port
    loopback = standalone or check_endpoint(rdzv_endpoint).rpartition(":")[0] in (rendezvous.LOOPBACK, "localhost")
    if standalone and high > 1:
        raise UsageError(f"invalid nnodes={nnodes!r} without rdzv_endpoint: many machines need a rendezvous "
                         "they all reach (--rdzv-endpoint HOST:PORT)")
    values = dict(env or {})
    if loopback:
        rendezvous.register()
        lo = loopback_interface()
        if lo is not None:  # gloo's and NCCL's own sockets on the loopback interface only
            values.setdefault("GLOO_SOCKET_IFNAME", lo)
            values.setdefault("NCCL_SOCKET_IFNAME", lo)
    config = LaunchConfig(
        min_nodes=low, max_nodes=high, nproc_per_node=nproc, run_id=rdzv_id or (str(uuid.uuid4()) if standalone else "none"),
        rdzv_backend=rendezvous.NAME if loopback else "c10d",
        rdzv_endpoint=f"{rendezvous.LOOPBACK}:0" if standalone else rdzv_endpoint,
        local_addr=rendezvous.LOOPBACK if loopback else None,
        max_restarts=max_restarts, monitor_interval=MONITOR_INTERVAL, start_method="spawn",
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    program, *args = argv
    try:
        with _environ(values):
            elastic_launch(config, program)(*args)
    except ChildFailedError as exc:
        raise failure(exc, nproc * low, errors) from None
    finally:
        # torch's agent can leave its rendezvous stores in reference cycles; destroyed
        # later in a forked child (a DataLoader worker), a store's server thread is
        # missing and the child aborts. Collect them here, where their threads are.
        gc.collect()


def first_failure(failures: Mapping[int, Any]) -> tuple[int, Any]:
    """The rank whose failure came first. torch's ``get_first_failure`` compares
    timestamps in whole seconds, so the workers the agent itself stopped with
    SIGTERM once it saw the failure tie with it (and rank 0 wins the tie): they
    are passed over unless every failure is one."""
    causes = {r: f for r, f in failures.items() if f.exitcode != -signal.SIGTERM} or dict(failures)
    return min(causes.items(), key=lambda item: (item[1].timestamp, item[0]))


#: what a rank raises when a peer died under it (gloo, NCCL, the store): never the cause
_COLLECTIVE_SIGNS = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket closed",
                     "gloo/transport", "nccl communicator was aborted", "connection refused", "read error",
                     "timed out", "timeout", "failed to recv", "failed to send")


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective's or the store's failure, which a rank meets
    when another rank died (torch's DistError kinds, or gloo's and NCCL's socket
    messages), rather than an error of its own."""
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    if kinds and isinstance(exc, kinds):
        return True
    text = str(exc).lower()
    return any(sign in text for sign in _COLLECTIVE_SIGNS)


def recorded_error(errors: str | Path | None) -> dict[str, Any] | None:
    """The real error among the workers' records of the last attempt: the first
    that is not a collective's failure. None when there is none: a rank that
    only saw its peer vanish is never the culprit (the peer may have been
    killed, leaving no record: the agent's exit codes tell that)."""
    if errors is None or not Path(errors).is_dir():
        return None
    records = []
    for path in Path(errors).glob("rank*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if not records:
        return None
    last = max(r["restart"] for r in records)
    own = [r for r in records if r["restart"] == last and not r["collective"]]
    return min(own, key=lambda r: (r["time"], r["rank"])) if own else None


def failure(exc, world: int, errors: str | Path | None = None) -> ParallelError:
    """One line for the rank that failed first: its exception's type and message
    where the workers recorded it (``errors``), else how the process ended."""
    own = recorded_error(errors)
    if own is not None:
        message = next((ln.strip() for ln in own["message"].splitlines() if ln.strip()), "")
        return ParallelError(f"data-parallel rank {own['rank']} of {world} failed: {own['type']}"
                             + (f": {message}" if message else ""))
    rank, f = first_failure(exc.failures)
    who = f"rank {rank} of {world}"
    if f.exitcode is not None and f.exitcode < 0:
        try:
            name = signal.Signals(-f.exitcode).name
        except ValueError:
            name = f"signal {-f.exitcode}"
        return ParallelError(f"data-parallel {who} died: it was killed by {name}")
    message = f.message if isinstance(f.message, str) else ""
    line = next((ln.strip() for ln in message.splitlines() if ln.strip() and "pytorch.org" not in ln), "")
    tail = f": {line}" if line else ""
    return ParallelError(f"data-parallel {who} failed: it exited with status {f.exitcode}{tail}")


__all__ = ["ParallelError", "launch", "parse_nnodes"]
