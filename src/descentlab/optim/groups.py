"""Param groups by parameter name or module type: ``optim.param_groups(model, *rules)``.

    >>> groups = optim.param_groups(
    ...     model,
    ...     {"modules": [nn.Embedding], "names": ["lm_head.*"], "use_muon": False},   # Muon's AdamW part
    ...     {"ndim": 1, "weight_decay": 0.0},                                         # biases, norm gains
    ... )
    >>> opt = optim.create("muon", groups, lr=0.02)

A rule is a dict of **selectors** and **group options**. The selectors —
any of them, a parameter matching one of them is selected:

* ``names``: fnmatch patterns on the qualified parameter name (``"blocks.0.attn.qkv.weight"``);
* ``modules``: module classes (or their names, e.g. ``"Embedding"``, ``"LayerNorm"``,
  matched against the class and its bases) of the module that owns the parameter;
* ``ndim``: an int (or a list of ints) the parameter's ``ndim`` must equal;
* ``select``: a callable ``(name, param) -> bool``.

Everything else in the rule is copied into the group (``lr``, ``weight_decay``,
``use_muon``, ...). Each parameter goes to the first rule that selects it; the
rest form a last group with no options of its own. Groups left empty are
dropped. Parameters are passed as ``(name, param)`` pairs, so name-based
options of ``create`` (``exclude_from_decay`` patterns) keep working. Rules
from YAML use the same keys with module *names* (no code is evaluated).

:func:`muon_groups` is the rule Muon's authors prescribe: the embeddings, the
output head and every parameter that is not 2-D on Muon's AdamW part.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

SELECTORS = ("names", "modules", "ndim", "select")


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """``parameter name -> the module that holds it`` (the first owner for shared ones)."""
    owners: dict[str, nn.Module] = {}
    for prefix, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            owners.setdefault(f"{prefix}.{pname}" if prefix else pname, module)
    return owners


def _module_test(spec: Any, where: str) -> Callable[[nn.Module], bool]:
    items = [spec] if isinstance(spec, (str, type)) else list(spec)
    names, classes = set(), []
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type) and issubclass(item, nn.Module):
            classes.append(item)
        else:
            raise TypeError(f"{where}: modules must be nn.Module classes or class names, got {item!r}")
    tup = tuple(classes)
    return lambda m: (bool(tup) and isinstance(m, tup)) or any(c.__name__ in names for c in type(m).__mro__)


def _matcher(rule: Mapping[str, Any], where: str) -> Callable[[str, Tensor, nn.Module], bool]:
    tests: list[Callable[[str, Tensor, nn.Module], bool]] = []
    if "names" in rule:
        patterns = [rule["names"]] if isinstance(rule["names"], str) else list(rule["names"])
        if not all(isinstance(p, str) for p in patterns):
            raise TypeError(f"{where}: names must be name patterns (strings), got {rule['names']!r}")
        tests.append(lambda name, p, m: any(fnmatch.fnmatchcase(name, pat) for pat in patterns))
    if "modules" in rule:
        is_owner = _module_test(rule["modules"], where)
        tests.append(lambda name, p, m: is_owner(m))
    if "ndim" in rule:
        dims = {rule["ndim"]} if isinstance(rule["ndim"], int) else set(rule["ndim"])
        tests.append(lambda name, p, m: p.ndim in dims)
    if "select" in rule:
        fn = rule["select"]
        if not callable(fn):
            raise TypeError(f"{where}: select must be a callable (name, param) -> bool, got {fn!r}")
        tests.append(lambda name, p, m: bool(fn(name, p)))
    if not tests:
        raise ValueError(f"{where}: a rule needs a selector ({', '.join(SELECTORS)}); got keys {sorted(rule)}")
    return lambda name, p, m: any(t(name, p, m) for t in tests)


def param_groups(model: nn.Module, *rules: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Param groups of ``model`` from ``rules`` (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"param_groups needs the model (an nn.Module), got {type(model).__name__}")
    matchers = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            raise TypeError(f"rule {i + 1}: expected a mapping of selectors and options, got {rule!r}")
        matchers.append(_matcher(rule, f"rule {i + 1}"))
    owners = _owners(model)
    buckets: list[list[tuple[str, Tensor]]] = [[] for _ in range(len(rules) + 1)]
    for name, p in model.named_parameters():
        owner = owners.get(name, model)
        index = next((i for i, match in enumerate(matchers) if match(name, p, owner)), len(rules))
        buckets[index].append((name, p))
    groups = []
    for rule, params in zip([*rules, {}], buckets):
        if params:
            groups.append({"params": params, **{k: v for k, v in rule.items() if k not in SELECTORS}})
    return groups


def muon_groups(model: nn.Module, head: str | Sequence[str] = ("lm_head.*", "head.*", "fc_out.*"),
                **adamw_options: Any) -> list[dict[str, Any]]:
    """Muon's prescribed split (Jordan et al. 2024; Moonlight, Liu et al. 2025): the
    embeddings (``nn.Embedding``), the output head (``head`` name patterns) and
    every non-2-D parameter on the AdamW part (``use_muon=False``), the other
    2-D weights on Muon."""
    return param_groups(
        model,
        {"modules": [nn.Embedding], "names": [head] if isinstance(head, str) else list(head),
         "ndim": [0, 1, 3, 4, 5], "use_muon": False, **adamw_options},
        {"ndim": 2, "use_muon": True},
    )


def names_of(groups: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """The parameter names of each group (for tests and listings)."""
    return [[item[0] for item in g["params"] if isinstance(item, tuple)] for g in groups]
