"""MARS: variance-reduced momentum (Yuan et al. 2024), for weights of ≥ 2 dimensions;
its own AdamW form for the rest.

``optim.create("mars", model.parameters())`` splits each param group, as
``pytorch_optimizer.MARS`` treats its parameters:

* tensors with ndim ≥ 2 (or every tensor with ``optimize_1d=True``): MARS
  (``use_mars=True``), ``lr``, ``betas``, ``weight_decay``::

      c = g + γ·β₁/(1 − β₁)·(g − g₋), clipped to norm ≤ 1;  m ← β₁·m + (1 − β₁)·c
      "adamw": v ← β₂·v + (1 − β₂)·c²;  u = m/((√v + ε)/√(1 − β₂ᵗ)·(1 − β₁ᵗ))
      "lion":  u = sign(m)
      p ← p − lr·(u + wd·p)

* the others (biases, norm gains): the same Adam scaling without the
  correction (``use_mars=False``), with ``betas_1d``, ``weight_decay_1d`` and
  the lr ``lr_1d·(group lr / lr)`` — the reference's ``lr_1d_factor``, so a
  scheduler scales both alike.

Hyperparameters and defaults are the reference's. Not offered:
``mars_type="shampoo"`` (the reference's Newton–Schulz variant),
``weight_decouple=False`` (in the reference, coupled decay changes only the
stored previous gradient, not the step), ``fixed_decay``. A group that
names ``use_mars`` is not split.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..params import DECAY_KEYS
from ..base import Hyper, betas_pair, boolean, learning_rate, nonnegative
from ..registry import OptimizerSpec, register
from ..transforms import add_decayed_weights, declare, scale_by_lr, scale_by_mars

DEFAULTS = {
    "lr": 3e-3,
    "betas": (0.95, 0.99),
    "gamma": 0.025,
    "mars_type": "adamw",
    "optimize_1d": False,
    "lr_1d": 3e-3,
    "betas_1d": (0.9, 0.95),
    "weight_decay": 0.0,
    "weight_decay_1d": 0.1,
    "ams_bound": False,
    "eps": 1e-8,
}


def _mars_chain():
    return [
        declare(
            {
                "optimize_1d": Hyper(False, boolean),
                "lr_1d": Hyper(DEFAULTS["lr_1d"], learning_rate),
                "betas_1d": Hyper(DEFAULTS["betas_1d"], betas_pair),
                "weight_decay_1d": Hyper(DEFAULTS["weight_decay_1d"], nonnegative),
            }
        ),
        scale_by_mars(),
        add_decayed_weights(),
        scale_by_lr(),
    ]


def _float(x: Any) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)


def _lr(group: dict[str, Any], values: dict[str, Any], key: str) -> float:
    """``key``'s value for the group, checked here since the split reads it before the chain does."""
    value = group.get(key, values[key])
    message = learning_rate(value)
    if message:
        raise ValueError(f"invalid {key}={value!r}: expected {message}")
    return _float(value)


def _split_groups(groups: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Split each group into its ≥ 2-D tensors (MARS) and the rest (the 1-D rule).

    The 1-D part's lr is a float, ``lr_1d/lr`` (create's values) times the
    group's lr, as the reference's ``lr_1d_factor``; a scheduler then scales it
    as it scales the group's.
    """
    out: list[dict[str, Any]] = []
    base = _lr({}, values, "lr")
    factor = _lr({}, values, "lr_1d") / base if base > 0 else 0.0
    for group in groups:
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if "use_mars" in group or group.get("optimize_1d", values["optimize_1d"]):
            out.append({"use_mars": True, **group})
            continue
        matrices, rest = [], []
        for item in params:
            p = item[1] if isinstance(item, tuple) else item
            (matrices if p.ndim >= 2 else rest).append(item)
        if matrices or not params:
            out.append({**group, "params": matrices, "use_mars": True})
        if rest:
            lr = _lr(group, values, "lr")
            decay = group.get("weight_decay_1d", values["weight_decay_1d"])
            if "weight_decay_1d" not in group and all(group.get(k) == 0 for k in DECAY_KEYS):
                decay = 0.0  # the group is excluded from decay (exclude_from_decay)
            out.append({
                **group, "params": rest, "use_mars": False,
                "lr": lr * factor, "betas": group.get("betas_1d", values["betas_1d"]), "weight_decay": decay,
            })
    return out


register(
    OptimizerSpec(
        name="mars",
        summary="MARS: Adam on variance-reduced momentum g + γ·β₁/(1−β₁)·(g − g₋) (2-D+); AdamW-like for 1-D",
        defaults=DEFAULTS,
        build=_mars_chain,
        reference="pytorch_optimizer.MARS",
        paper="Yuan et al., 'MARS: Unleashing the Power of Variance Reduction for Training Large Models', ICML 2025",
        split_groups=_split_groups,
    )
)
