"""Reference for prodigy: pytorch_optimizer.Prodigy (4.1.0)."""

import pytorch_optimizer
import torch

from ._common import Reference


class _Prodigy(pytorch_optimizer.Prodigy):
    """pytorch_optimizer.Prodigy, with two adjustments made outside its arithmetic.

    * It keeps its group sums (``d_numerator``, ``d_de_nom``) in torch's default
      dtype, float32; ours uses float64 for float64 parameters. For those, its
      step runs under ``torch.set_default_dtype(torch.float64)``, so that the
      float64 comparison holds at 1e-9 instead of being loosened.
    * With ``weight_decouple=False`` it adds ``weight_decay·p`` to ``p.grad``
      after the gradient was used (no effect); ours adds it to the gradient
      first, as facebookresearch/prodigy does. This reference gets it as a
      gradient term added before its step (and ``weight_decay=0``).
    """

    def __init__(self, params, *, coupled_decay=0.0, **hp):
        super().__init__(params, **hp)
        self.coupled_decay = coupled_decay

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if self.coupled_decay:
            # Added before the reference negates p.grad when maximizing.
            sign = -1.0 if self.maximize else 1.0
            for p in params:
                p.grad.add_(p, alpha=sign * self.coupled_decay)
        default = torch.get_default_dtype()
        if any(p.dtype == torch.float64 for p in params):
            torch.set_default_dtype(torch.float64)
        try:
            return super().step(closure)
        finally:
            torch.set_default_dtype(default)


class _PerGroup:
    """One reference optimizer per param group: ours estimates d per group,
    the reference over all groups (with the first group's lr for all)."""

    def __init__(self, optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self):
        return {p: s for opt in self.optimizers for p, s in opt.state.items()}

    def step(self, closure=None):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none=True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none)


def prodigy_reference(groups, **hp):
    if not hp.get("weight_decouple", True):
        hp = {**hp, "coupled_decay": hp.get("weight_decay", 0.0), "weight_decay": 0.0}
    if len(groups) == 1:
        return _Prodigy(groups, **hp)
    return _PerGroup([_Prodigy([group], **hp) for group in groups])


_VARIANTS = [
    {"d0": 1e-3, "betas": (0.8, 0.99), "beta3": 0.95},
    {"d0": 1e-3, "weight_decay": 0.1},
    {"d0": 1e-2, "weight_decay": 0.05, "fixed_decay": True, "growth_rate": 1.05, "bias_correction": True},
    {"d0": 1e-3, "weight_decay": 0.01, "weight_decouple": False},
    {"d0": 1e-3, "safeguard_warmup": True, "d_coef": 0.5, "eps": None},
    {"lr": 0.5, "d0": 1e-3, "maximize": True, "weight_decay": 0.01, "weight_decouple": False},
]

REFERENCES = {
    "prodigy": Reference(
        prodigy_reference,
        _VARIANTS,
        {"s": "s", "p0": "p0", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
        descent={"lr": 1.0},
        note=(
            "d is per param group here (one reference per group in the two-group case); "
            "weight_decouple=False is given to the reference as a gradient term; its float64 "
            "steps run with float64 as torch's default dtype (see _Prodigy)"
        ),
    ),
}
