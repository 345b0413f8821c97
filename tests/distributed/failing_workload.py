"""linreg whose model raises on one rank (``FAIL_RANK``, default 1) at its
third training forward: the real error of a data-parallel run, which the user must
see on the last line, with that rank, not the other rank's secondary failure.

linreg: its data are drawn, not read through scikit-learn (digits-mlp, used before,
imported it in the command and in both workers: ~1 s of each process's start, a third
of what such a 3-step launch costs)."""

import os

from torch import nn

from descentlab import workloads


class Exploding(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 3 and os.environ.get("RANK") == os.environ.get("FAIL_RANK", "1"):
                raise RuntimeError(f"model exploded on purpose at forward {self.calls}")
        return self.inner(x)


def make(seed: int = 0):
    import dataclasses

    wl = workloads.load("linreg", seed=seed)
    base = wl.make_model
    return dataclasses.replace(wl, make_model=lambda: Exploding(base()))
