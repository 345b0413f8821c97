"""A rendezvous for torch's elastic agent that listens on 127.0.0.1 only.

torchrun's ``--standalone`` rendezvous (the "c10d" backend on ``localhost:0``)
serves its TCPStore on every interface, and so does the store the agent shares
with its workers: ``TCPStore`` binds the wildcard address whatever host it is
given. For one machine that is more than needed, and this project's rule is
that servers in tests listen on loopback only. This backend is torch's own
dynamic rendezvous (``C10dRendezvousBackend`` + ``create_handler``), with both
stores built on a socket this module binds to 127.0.0.1 itself and hands to
``TCPStore(master_listen_fd=...)``.

``descentlab train --nproc N`` uses it, and so can torchrun, through the entry
point ``torchrun.handlers`` (``pyproject.toml``)::

    torchrun --rdzv-backend descentlab-loopback --rdzv-endpoint 127.0.0.1:0 \\
             --nnodes 1 --nproc-per-node 2 -m descentlab train ...

Many machines need a rendezvous the others can reach: torch's "c10d"
(``--rdzv-endpoint HOST:PORT``), which descentlab uses as it is. An endpoint
on 127.0.0.1 with several agents (``--nnodes 2`` twice on one machine, as the
tests do) stays on this backend: the first agent serves the store on the
fixed port, the others connect to it.
"""

from __future__ import annotations

import errno
import socket
from datetime import timedelta

import torch.distributed as dist

NAME = "descentlab-loopback"
LOOPBACK = "127.0.0.1"


def loopback_store(port: int = 0, *, timeout: float = 300.0) -> dist.TCPStore:
    """A TCPStore server bound to 127.0.0.1 (``port`` 0: a free one, reserved
    by the bind itself, so no other process can take it first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
        store = dist.TCPStore(LOOPBACK, sock.getsockname()[1], is_master=True, wait_for_workers=False,
                              multi_tenant=True, timeout=timedelta(seconds=timeout),
                              master_listen_fd=sock.fileno(), use_libuv=True)
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the store owns the socket now
    return store


def create_handler(params):
    """The rendezvous handler (torch's ``RendezvousHandler`` interface) for
    ``params`` (backend ``descentlab-loopback``, endpoint ``127.0.0.1:PORT``)."""
    from torch.distributed.elastic.rendezvous import dynamic_rendezvous
    from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import C10dRendezvousBackend
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    host, port = parse_rendezvous_endpoint(params.endpoint or f"{LOOPBACK}:0", default_port=0)
    if host not in (LOOPBACK, "localhost"):
        raise ValueError(f"invalid rdzv endpoint {params.endpoint!r} for {NAME}: expected 127.0.0.1:PORT "
                         "(this rendezvous is for one machine; use --rdzv-backend c10d for many)")
    timeout = float(params.get_as_int("read_timeout", 300) or 300)
    try:
        store = loopback_store(port, timeout=timeout)
    except OSError as exc:  # another agent on this machine serves it (several "nodes" on one machine)
        if port == 0 or exc.errno != errno.EADDRINUSE:
            raise
        store = dist.TCPStore(LOOPBACK, port, is_master=False, multi_tenant=True, timeout=timedelta(seconds=timeout))
    class Backend(C10dRendezvousBackend):  # torch's, under this backend's name
        @property
        def name(self) -> str:
            return NAME

    backend = Backend(store, params.run_id)
    handler = dynamic_rendezvous.create_handler(store, backend, params)
    handler.__class__ = _loopback_handler_class()
    handler.store_timeout = timeout
    return handler


def _loopback_handler_class():
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import DynamicRendezvousHandler

    class LoopbackHandler(DynamicRendezvousHandler):
        """torch's handler with the store it shares with the workers (rank 0's
        "bootstrap" store; torch binds it to every interface) on loopback, and a
        new one for every round: torch reuses it across rounds, and after a
        restart the new workers can read the dead ones' gloo addresses from it
        ("Connection refused" in connectFullMesh; torchrun --standalone
        --max-restarts fails so in about half the restarts on this machine).
        A subclass, not patched methods: a closure over the handler would make
        a reference cycle that keeps its stores (and their server threads)
        alive until a garbage collection, which may then happen in a forked
        child, where destroying them aborts the process."""

        def _create_tcp_store_server(self, master_addr, master_port):
            return loopback_store(master_port, timeout=self.store_timeout)

        def next_rendezvous(self):
            self._bootstrap_store_info = None
            self._shared_tcp_store_server = None
            return super().next_rendezvous()

    return LoopbackHandler


def handler():
    """The entry point of group ``torchrun.handlers``: torch calls it and registers what it returns."""
    return create_handler


def register() -> None:
    """Register the backend in this process (the agent of ``train --nproc`` runs here)."""
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry

    try:
        rendezvous_handler_registry.register(NAME, create_handler)
    except ValueError:  # already registered (by the entry point, or an earlier call)
        pass
