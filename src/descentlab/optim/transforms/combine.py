"""Combinators: transforms made of other transforms.

* :class:`Partition` (``partition``) runs one of several sub-chains, chosen
  per param group by the value of a group key; ``by_group(key, if_true,
  if_false)`` is its two-branch form on a boolean key. Muon uses
  ``by_group("use_muon", [...Muon...], [...AdamW...])``, the group flag of
  Keller Jordan's ``MuonWithAuxAdam``. Because the choice is per group, each
  branch has its own ``lr`` (the group's), so LR schedulers act on both.
  (optax's ``multi_transform`` chooses per parameter by a label tree; here the
  unit is the param group, as hyperparameters are.)
* :class:`Declare` (``declare``) changes nothing: it declares param-group keys
  that no transform reads at step time, such as the values an
  ``OptimizerSpec.split_groups`` copies into the groups it makes, so that they
  are accepted, listed and validated like any hyperparameter.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from torch import Tensor

from ..base import Hyper, Transform, boolean, one_of

__all__ = ["Partition", "Declare", "partition", "by_group", "declare"]


class Partition(Transform):
    """Run the sub-chain ``branches[group[key]]`` on each param group.

    ``key`` is a group key (a hyperparameter with default ``default``); its
    value must be one of the branches' labels. Each branch is a list of
    transforms applied in order, like a chain, to the group's updates; a branch
    may be empty (identity). The transforms of every branch are the
    combinator's ``children()``, so their hyperparameters are merged into the
    optimizer's defaults and their state is created and checked like that of
    any transform (give two branches' transforms different ``keys`` where they
    need different values of one hyperparameter).

    Only the chosen branch (``active_children(group)``) creates state for the
    group's parameters, updates them, and is told about ``train()``/``eval()``.
    The chain validates the transforms of every branch against every group (a
    branch's hyperparameters have values in every group), so a check that holds
    only where a branch acts belongs in its ``update``, not in ``validate_group``.
    """

    def __init__(
        self,
        key: str,
        branches: Mapping[Hashable, Sequence[Transform]],
        *,
        default: Hashable,
        check=None,
    ):
        if not branches:
            raise ValueError("Partition needs at least one branch")
        self.branches = {label: list(ts) for label, ts in branches.items()}
        for label, ts in self.branches.items():
            for t in ts:
                if not isinstance(t, Transform):
                    raise TypeError(f"branch {label!r} of Partition holds {t!r}, not a Transform")
        if default not in self.branches:
            raise ValueError(f"invalid default={default!r}: expected one of {list(self.branches)!r}")
        self.hypers = {"key": Hyper(default, check or one_of(*self.branches))}
        super().__init__(keys={"key": key})

    def __repr__(self) -> str:
        parts = [
            f"{label!r}: [{', '.join(repr(t) for t in ts)}]" for label, ts in self.branches.items()
        ]
        return f"{type(self).__name__}({self.keys['key']}, {{{', '.join(parts)}}})"

    def children(self) -> Sequence[Transform]:
        return [t for ts in self.branches.values() for t in ts]

    def active_children(self, group: Mapping[str, Any]) -> Sequence[Transform]:
        """The branch that acts on ``group``."""
        return self.branches[self.hp(group, "key")]

    def init_state(self, p: Tensor, state: dict, group: Mapping[str, Any]) -> None:
        # Only the branch that acts on the group gets state (the chain calls
        # the top-level transforms, and each combinator initializes its children).
        for t in self.active_children(group):
            t.init_state(p, state, group)

    def update(
        self,
        updates: list[Tensor],
        params: list[Tensor],
        states: list[dict],
        group: Mapping[str, Any],
        foreach: bool,
    ) -> list[Tensor]:
        for t in self.active_children(group):
            updates = t.update(updates, params, states, group, foreach)
        return updates

    def on_mode(self, mode, params, states, group) -> None:
        for t in self.active_children(group):
            t.on_mode(mode, params, states, group)


def by_group(
    key: str,
    if_true: Sequence[Transform],
    if_false: Sequence[Transform],
    *,
    default: bool = True,
) -> Partition:
    """Two branches on a boolean group key: ``if_true`` where ``group[key]``, else ``if_false``."""
    return Partition(key, {True: if_true, False: if_false}, default=default, check=boolean)


class Declare(Transform):
    """The identity, declaring param-group keys that no transform reads at step time.

    ``declare({"adamw_lr": Hyper(3e-4, nonnegative)})`` makes ``adamw_lr`` a
    hyperparameter of the chain: it gets a default in every param group, is
    validated when a group is added, and may be passed to the optimizer; what
    uses it is code outside the step (e.g. ``OptimizerSpec.split_groups``,
    which copies it into the ``lr`` of the groups it creates). No state.
    """

    def __init__(self, hypers: Mapping[str, Hyper], **defaults: Any):
        self.hypers = dict(hypers)
        super().__init__(**defaults)

    def update(self, updates, params, states, group, foreach):
        return updates

    def update_tensor(self, u, p, state, group):
        return u

    def update_foreach(self, updates, params, states, group):
        return updates


partition = Partition
declare = Declare
