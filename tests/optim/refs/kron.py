"""Reference for kron: pytorch_optimizer.Kron (4.1.0), seeded to draw our numbers.

The reference draws its probe vectors ``v`` from torch's global generator
(``torch.randn_like``, once per parameter at each preconditioner update) and
its balancing coin from NumPy's (``np.random.random()``, once per step for all
parameters). Ours gives each parameter a ``torch.Generator`` seeded with
``seed`` and draws, at each update, the coin (tensors of ≥ 2 dimensions, when
``balance_prob > 0``: ``torch.rand(()) < balance_prob``) and then ``v``. The
adapter below (test side only) makes the reference draw the same numbers:
during its step, ``torch.randn_like`` draws from the current parameter's
generator, ``np.random.random`` returns 0 (so the step's "balance" is
``balance_prob > 0`` and each parameter's own coin decides), and ``balance_q``
draws that coin before balancing. Its ``precondition_lr`` and
``precondition_init_scale`` are param-group keys that the constructor does not
take; they are set on its groups. Our dtype names ("float32") become torch dtypes.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import torch
from pytorch_optimizer import Kron
from pytorch_optimizer.optimizer import psgd

from descentlab.optim.transforms.kron import as_dtype

from ._common import Reference

_balance_q = psgd.balance_q


class SeededKron(Kron):
    """pytorch_optimizer.Kron drawing from one generator per parameter, seeded with ``seed``."""

    def __init__(self, params, seed=0, precondition_lr=0.1, precondition_init_scale=1.0,
                 precondition_dtype=torch.float32, mu_dtype=None, **hp):
        super().__init__(params, precondition_dtype=as_dtype(precondition_dtype), mu_dtype=as_dtype(mu_dtype), **hp)
        for group in self.param_groups:
            group["precondition_lr"] = precondition_lr
            group["precondition_init_scale"] = precondition_init_scale
        self.seed = seed
        self.generators: dict = {}

    @torch.no_grad()
    def step(self, closure=None):
        order = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        for p in order:
            if p not in self.generators:
                self.generators[p] = torch.Generator(device=p.device).manual_seed(self.seed)
        cursor = [0]

        def generator():
            return self.generators[order[cursor[0]]]

        def randn_like(x, dtype=None, **kw):
            v = torch.randn(x.shape, generator=generator(), dtype=dtype or x.dtype, device=x.device)
            cursor[0] += 1
            return v

        def balance_q(qs):
            coin = torch.rand((), generator=generator(), dtype=torch.float32, device=qs[0].device)
            if coin < self.balance_prob:
                _balance_q(qs)

        with (
            mock.patch.object(torch, "randn_like", randn_like),
            mock.patch.object(psgd, "balance_q", balance_q),
            mock.patch.object(np.random, "random", lambda: 0.0),
        ):
            return super().step(closure)


def kron_reference(groups, **hp):
    return SeededKron(groups, **hp)


_VARIANTS = [
    # always update the preconditioner; balance often; momentum and lr changed
    {"lr": 3e-3, "pre_conditioner_update_probability": 1.0, "balance_prob": 0.5, "momentum": 0.5, "seed": 7},
    # a fixed 0.1 (every 10th step), decoupled weight decay, maximize
    {"lr": 2e-3, "pre_conditioner_update_probability": 0.1, "weight_decay": 0.05, "maximize": True},
    # coupled weight decay; diagonal factors for the dimensions above 5 (the 6's)
    {"lr": 1e-3, "weight_decay": 0.1, "weight_decouple": False, "max_size_triangular": 5,
     "pre_conditioner_update_probability": 0.5, "precondition_lr": 0.3},
    # memory_save_mode, a larger initial preconditioner, no balancing
    {"lr": 1e-3, "memory_save_mode": "one_diag", "precondition_init_scale": 2.0, "balance_prob": 0.0,
     "momentum": 0.95, "pre_conditioner_update_probability": 0.25},
    # min_ndim_triangular 3: every factor diagonal here; smart_one_diag
    {"lr": 5e-3, "min_ndim_triangular": 3, "pre_conditioner_update_probability": 1.0},
    {"lr": 1e-3, "memory_save_mode": "smart_one_diag", "pre_conditioner_update_probability": 1.0,
     "balance_prob": 1.0},
]

REFERENCES = {
    "kron": Reference(
        kron_reference,
        _VARIANTS,
        {"momentum_buffer": "momentum_buffer"},
        descent={"lr": 0.03},
        rtol64=1e-5,
    ),
}
