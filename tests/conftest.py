"""Test-session settings."""

import os

import torch

# `make test` runs two pytest workers on a 2-core machine: one torch thread
# each, or OpenMP threads oversubscribe the cores and spin (measured: a tiny
# MLP step went from ~1 ms to ~30 ms).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for subprocesses the tests start
