"""mnist1d-mlp in float64, for equivalence tests of many processes against one.

In float32 the processes' gradients differ from one process's by the order of
the batch sums (about 1e-7 relative), and training amplifies that: with Adam
at the recipe's lr the difference grows about tenfold every 20 steps on
mnist1d-mlp (docs/distributed.md). In float64 the same amplification starts
from 1e-16, so what remains after 100 steps is far below 1e-5 unless the
strategy itself computes something else — a wrong loss weighting, a missing
shard, an optimizer statistic taken over the local shard only.
"""

import dataclasses

from descentlab import workloads


def make(seed: int = 0):
    wl = workloads.load("mnist1d-mlp", seed=seed)

    def double(split):
        x, y = split
        return x.double(), y

    base = wl.make_model
    return dataclasses.replace(wl, name="mnist1d-mlp-float64", train=double(wl.train), val=double(wl.val),
                               test=double(wl.test), make_model=lambda: base().double())
