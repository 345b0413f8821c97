"""Which parameters a rule selects: by ndim, by name pattern, or by a callable.

A rule is one of:

* ``"auto"``: parameters with ndim ≤ 1 — biases and normalization weights, the
  usual exclusion from weight decay (nanoGPT, BERT);
* a sequence of ``fnmatch`` patterns matched against parameter names (the
  optimizer must be given ``model.named_parameters()``), e.g. ``["*.bias", "*norm*"]``;
* a callable ``(name, param) -> bool`` (name is "" for unnamed parameters).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from torch import Tensor

Rule = Union[str, Sequence[str], Callable[[str, Tensor], bool]]
Selector = Callable[["str | None", Tensor], bool]


def selector(rule: Rule, what: str = "mask") -> Selector:
    """Turn a rule into ``select(name_or_None, param) -> bool``."""
    if rule == "auto":
        return lambda name, p: p.ndim <= 1
    if callable(rule):
        return lambda name, p: bool(rule(name or "", p))
    if isinstance(rule, str) or not isinstance(rule, Sequence) or not all(isinstance(x, str) for x in rule):
        raise ValueError(
            f"invalid {what}={rule!r}: expected 'auto', a list of name patterns, "
            "or a callable (name, param) -> bool"
        )
    patterns = list(rule)

    def by_name(name: str | None, p: Tensor) -> bool:
        if name is None:
            raise ValueError(f"{what} with name patterns needs named parameters: pass model.named_parameters()")
        return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)

    return by_name


def names_by_id(group: Mapping[str, Any]) -> dict[int, str]:
    """``id(param) -> name`` for a param group ({} if it has no names)."""
    names = group.get("param_names")
    if names is None:
        return {}
    return {id(q): name for q, name in zip(group["params"], names)}
