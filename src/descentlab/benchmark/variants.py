"""Held-out variants: a workload changed in one detail, with its own target.

AlgoPerf (Dahl et al. 2023, §4.1) pairs each base workload with held-out variants (another
activation, width or normalisation) so that a training algorithm tuned to the base
workloads cannot score by over-fitting them: a base workload's time counts only when the
algorithm also reaches the variant's target (:func:`descentlab.benchmark.score.counted`).

A variant here is a mapping of changes, any of:

* ``activation``: every ReLU/GELU/SiLU/Tanh/ELU module of the model is replaced by this
  activation (``relu``, ``gelu``, ``silu``, ``tanh``, ``elu``); a model without such
  modules is an error naming it (the change would do nothing);
* ``data_seed``: the workload is built from this seed, a new data draw or split;
* ``workload``: another workload altogether (a name or ``file.py:FUNC``).

Decided: activation and data seed, because both apply to any workload without knowing its
code (a width change would need the model's constructor); for a user's own model the
``workload:`` form takes any variant the user can write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..errors import UsageError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU,
}
SWAPPED = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.ELU)
CHANGES = ("activation", "data_seed", "workload")


def check(changes: Any, where: str) -> dict[str, Any]:
    """The variant's changes, validated (one UsageError naming ``where`` and the value)."""
    if not isinstance(changes, Mapping) or not changes:
        raise UsageError(f"{where}: invalid variant {changes!r}: expected a mapping of {', '.join(CHANGES)}")
    unknown = sorted(set(changes) - set(CHANGES))
    if unknown:
        raise UsageError(f"{where}: unknown variant key(s) {unknown}; expected {', '.join(CHANGES)}")
    act = changes.get("activation")
    if act is not None and act not in ACTIVATIONS:
        raise UsageError(f"{where}: invalid activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
    seed = changes.get("data_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UsageError(f"{where}: invalid data_seed {seed!r}: expected an integer >= 0")
    other = changes.get("workload")
    if other is not None and (not isinstance(other, str) or not other.strip()):
        raise UsageError(f"{where}: invalid variant workload {other!r}: expected a name or file.py:FUNC")
    return dict(changes)


def describe(changes: Mapping[str, Any]) -> str:
    """``"activation tanh, data seed 1"``: what the report shows."""
    parts = []
    if changes.get("workload"):
        parts.append(f"workload {changes['workload']}")
    if changes.get("activation"):
        parts.append(f"activation {changes['activation']}")
    if changes.get("data_seed") is not None:
        parts.append(f"data seed {changes['data_seed']}")
    return ", ".join(parts)


def swap_activations(model: nn.Module, activation: str) -> int:
    """Replace every activation module of ``model`` in place; returns how many were replaced."""
    make = ACTIVATIONS[activation]
    count = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, SWAPPED):
                setattr(parent, name, make())
                count += 1
    return count


def build(base: str, changes: Mapping[str, Any], *, data_dir: str | None = None) -> Any:
    """The variant of workload ``base`` (a name or reference): a Workload."""
    from .. import workloads

    ref = changes.get("workload") or base
    wl = workloads.load(ref, seed=int(changes.get("data_seed") or 0), data_dir=data_dir)
    activation = changes.get("activation")
    if activation is None:
        return dataclasses.replace(wl, name=f"{wl.name} ({describe(changes)})")
    make_model = wl.make_model
    probe = make_model()
    if not any(isinstance(m, SWAPPED) for m in probe.modules()):
        raise UsageError(f"variant of {base!r}: its model has no activation module to replace with {activation} "
                         "(it uses none, or calls functions such as F.relu): use data_seed or workload instead")

    def make() -> nn.Module:
        model = make_model()
        swap_activations(model, activation)
        return model

    return dataclasses.replace(wl, name=f"{wl.name} ({describe(changes)})", make_model=make)
