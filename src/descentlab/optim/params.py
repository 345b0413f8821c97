"""What an optimizer is given: tensors, ``(name, tensor)`` pairs or param-group
dicts, made into groups; and the groups split by ``exclude_from_decay``.

Shared by the named optimizers (:mod:`.create`) and those given by reference
(:mod:`.reference`), which both take ``exclude_from_decay``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from .masks import Rule, selector

#: every decay a group may carry: set to 0 for the parameters excluded from decay
DECAY_KEYS = ("weight_decay", "l1", "l2", "decoupled_decay")

Exclude = Rule | None


def as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    """``params`` as a list of param-group dicts (a new list of new dicts)."""
    if isinstance(params, Tensor):
        raise TypeError(
            "params must be an iterable of tensors or of param-group dicts, got a single "
            f"Tensor of shape {tuple(params.shape)}; pass [tensor] or model.parameters()"
        )
    if isinstance(params, dict):
        raise TypeError("params must be an iterable of param groups; wrap the dict in a list")
    items = list(params)
    if not items:
        raise ValueError("optimizer got an empty parameter list")
    if isinstance(items[0], dict):
        return [dict(g) for g in items]
    return [{"params": items}]


def split_decay(groups: list[dict[str, Any]], exclude: Exclude) -> list[dict[str, Any]]:
    """Split each group into a decayed part and a part with every decay set to 0."""
    if exclude is None:
        return groups
    rule = selector(exclude, "exclude_from_decay")
    out = []
    for group in groups:
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        keep, drop = [], []
        for item in params:
            name, p = item if isinstance(item, tuple) else (None, item)
            (drop if rule(name, p) else keep).append(item)
        if keep:
            out.append({**group, "params": keep})
        if drop:
            out.append({**group, "params": drop, **{k: 0.0 for k in DECAY_KEYS}})
    return out
