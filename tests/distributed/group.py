"""Two gloo processes for the tests: how a spawned worker joins, how one that
succeeded ends, and the results of both.

``join``: a FileStore (nothing listens on the network) and gloo's pair sockets
on loopback, one thread. ``finish``: the results are saved; it leaves the group and exits without the interpreter's
teardown. Under load, destroying what is still alive then (a DDP reducer or a
process group with running threads, torch's C++ objects, in whatever order the
interpreter picks) has aborted a worker ("terminate called without an active
exception", SIGABRT) after the test's work was done. A failing worker still
raises through mp.spawn as usual.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def join(rank: int, store: str, world: int = WORLD) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)


def spawn(worker, root: Path, world: int = WORLD) -> list:
    """``worker(rank, store, root)`` on every rank; what each saved as ``root/rank{r}.pt``."""
    mp.spawn(worker, args=(str(root / "store"), str(root)), nprocs=world, join=True)
    return [torch.load(root / f"rank{r}.pt", weights_only=True) for r in range(world)]


@contextlib.contextmanager
def meanwhile(worker, store: str, root: str, world: int = WORLD) -> Iterator[None]:
    """``worker(rank, store, root)`` on every rank, spawned; the body runs in this process
    meanwhile (the one-process references), then the ranks are joined (a failing one
    raises) and any still alive at an error is terminated."""
    ranks = mp.spawn(worker, args=(store, root), nprocs=world, join=False)
    try:
        yield
        while not ranks.join():
            pass
    finally:
        for process in ranks.processes:
            if process.is_alive():
                process.terminate()


def finish() -> None:
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
