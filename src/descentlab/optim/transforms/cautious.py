"""Cautious updates (Liang, Chen, Liu & Liu 2024): drop the coordinates where the
update disagrees with the gradient.

Liang et al., "Cautious Optimizers: Improving Training with One Line of Code",
arXiv 2411.16085. For a direction u (the step is −lr·u) and the gradient g::

    φ = 1[u ⊙ g > 0]                   (the coordinates where −lr·u descends)
    u ← u ⊙ φ · numel / (Σφ + 1)       (rescaled so the step keeps its size)

per tensor, which is what C-AdamW and C-Lion (the paper's code, and
``pytorch_optimizer``'s ``cautious=True``) compute; the +1 keeps an all-masked
tensor finite. On FSDP2 shards Σφ and numel are the whole tensor's (one
all-reduce of the counts per step).

:func:`with_cautious` puts the mask into any chain, around the transforms that
make the *direction* — after the gradient's L1/L2 terms and before decoupled
decay and the lr — so ``optim.create(name, ..., cautious=True)`` works on every
named optimizer. Where a chain has no separate direction (prodigy and
adamw_schedulefree compute the whole step in one transform) the mask is taken
on the step itself: ``φ = 1[Δ ⊙ g < 0]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from .. import sharded
from ..base import Hyper, Transform, boolean
from .adaptive import AddDecayedWeightsIfDecoupled, AddL2IfCoupled
from .combine import Declare, Partition
from .factored import ScaleByRelativeStep
from .orthogonal import ScaleByAdjustedLr
from .regularize import AddDecayedWeights, AddL1, AddL2, DecayWeights
from .scale import ScaleByLr

__all__ = ["Cautious", "cautious", "with_cautious", "cautious_mask"]


def cautious_mask(updates: list[Tensor], grads: list[Tensor], states: Sequence[Mapping[str, Any]],
                  descent_sign: int = 1) -> list[Tensor]:
    """``u ⊙ φ · numel/(Σφ + 1)`` per tensor, with ``φ = 1[descent_sign·u ⊙ g > 0]``; new tensors."""
    masks = [(u * g).mul_(descent_sign).gt_(0).to(u.dtype) for u, g in zip(updates, grads)]
    counts = sharded.all_reduce_sum([m.sum() for m in masks], states)
    out = []
    for u, m, count, state in zip(updates, masks, counts, states):
        m.mul_(sharded.numel(u, state) / (count + 1))
        out.append(u * m)
    return out


class Cautious(Transform):
    """Run ``inner`` (a sub-chain), then mask its output where it disagrees with
    the gradient this transform received (see the module docstring).

    Group key ``cautious`` (default False): off, the sub-chain runs unchanged at
    no cost. ``whole_step``: ``inner`` produces the step Δ (already × −lr), so
    the mask keeps ``Δ ⊙ g < 0``. The sub-chain's transforms are this one's
    children: their hyperparameters and state are the optimizer's.
    """

    hypers = {"cautious": Hyper(False, boolean)}

    def __init__(self, inner: Sequence[Transform], *, whole_step: bool = False, **kw: Any):
        self.inner = list(inner)
        self.whole_step = whole_step
        super().__init__(**kw)

    def __repr__(self) -> str:
        return f"Cautious([{', '.join(repr(t) for t in self.inner)}])"

    def children(self) -> Sequence[Transform]:
        return self.inner

    def hp(self, group, role):
        # A param group saved before this option existed has no "cautious" key.
        return group.get(self.keys[role], False) if role == "cautious" else super().hp(group, role)

    def update(self, updates, params, states, group, foreach):
        grads = updates
        for t in self.inner:
            updates = t.update(updates, params, states, group, foreach)
        if not self.hp(group, "cautious"):
            return updates
        return cautious_mask(list(updates), list(grads), states, -1 if self.whole_step else 1)


#: Transforms a direction is made before (the gradient's own terms) ...
_BEFORE = (AddL1, AddL2IfCoupled, Declare)
#: ... and the ones that come after it: decoupled decay and the lr (other modules'
#: transforms say which side they are on with a class attribute ``before_direction``
#: or ``after_direction = True``).
_AFTER = (AddDecayedWeights, AddDecayedWeightsIfDecoupled, DecayWeights, ScaleByLr, ScaleByAdjustedLr,
          ScaleByRelativeStep)


def _is_before(t: Transform) -> bool:
    return isinstance(t, _BEFORE) or type(t) is AddL2 or getattr(t, "before_direction", False)


def with_cautious(transforms: Sequence[Transform]) -> list[Transform]:
    """``transforms`` with a :class:`Cautious` around the part that makes the direction.

    The part runs from the first transform that is not a gradient term (L1,
    coupled L2, declarations) to the first decoupled decay or lr scaling. A
    :class:`Partition` in that part gets the mask in each branch instead (Muon
    and its AdamW groups); a chain with no lr scaling gets it on the whole step.
    """
    ts = list(transforms)
    i = 0
    while i < len(ts) and _is_before(ts[i]):
        i += 1
    j = i
    while j < len(ts) and not (isinstance(ts[j], _AFTER) or getattr(ts[j], "after_direction", False)):
        j += 1
    part = ts[i:j]
    if any(isinstance(t, Partition) for t in part):
        for t in part:
            if isinstance(t, Partition):
                t.branches = {label: with_cautious(branch) for label, branch in t.branches.items()}
        return ts
    if not part:
        return ts  # no direction made here (a branch of decay or L2 only): nothing to mask
    return [*ts[:i], Cautious(part, whole_step=j == len(ts)), *ts[j:]]


cautious = Cautious
