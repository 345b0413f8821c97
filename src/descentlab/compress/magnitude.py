"""Unstructured magnitude pruning, layer-wise or global, on ``torch.nn.utils.prune``.

``prune_magnitude(model, 0.8)`` zeroes the 80 % of the weights of smallest
magnitude among every Linear and Conv layer's weight (and Hugging Face's
``Conv1D``, GPT-2's linear layer with its weight stored transposed) (``scope="global"``, one
threshold for the whole model, as ``prune.global_unstructured``) or 80 % of each
layer (``scope="layer"``, ``prune.l1_unstructured`` per layer). Biases and
normalisation layers are left dense: they are a small share of the parameters
and pruning them costs accuracy for nothing (Han et al. 2015 prune weights).

Called again with a higher sparsity it prunes further among the weights still
kept (torch's ``PruningContainer``), so a gradual schedule is a series of calls.
With ``optimizer=`` the masks reach the optimizer (:func:`..masks.keep_pruned`).
``make_permanent`` removes the re-parametrisation: the module is left with a
plain ``weight`` parameter — the same tensor object the optimizer holds — with
exact zeros where it was pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.utils.prune as tprune
from torch import nn

from ..errors import UsageError
from .masks import keep_pruned

#: the layers whose ``weight`` is pruned (and Hugging Face's Conv1D: :func:`is_prunable`)
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SCOPES = ("global", "layer")


def check_sparsity(value: object, what: str = "sparsity") -> float:
    """``value`` as a float in [0, 1), else a UsageError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value < 1:
        raise UsageError(f"invalid {what}={value!r}: expected a fraction in [0, 1), e.g. 0.8 for 80 % of the weights")
    return float(value)


def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (``transformers.pytorch_utils``): a Linear layer whose
    weight is stored ``(in, out)``, the layers of GPT-2's attention and MLP. Found by
    its class, without importing transformers."""
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers") \
        and isinstance(getattr(module, "weight", None), torch.Tensor)


def is_prunable(module: nn.Module) -> bool:
    """A layer whose ``weight`` magnitude pruning zeroes: Linear, Conv1d/2d/3d, Hugging Face's Conv1D."""
    return isinstance(module, PRUNABLE) or is_hf_conv1d(module)


def prunable(model: nn.Module, ignore: Iterable[nn.Module | str] = ()) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear and Conv layer (:func:`is_prunable`), minus ``ignore`` (modules or names)."""
    skip = list(ignore)
    names = {s for s in skip if isinstance(s, str)}
    mods = {id(s) for s in skip if isinstance(s, nn.Module)}
    known = {n for n, _ in model.named_modules()}
    unknown = sorted(names - known)
    if unknown:
        raise UsageError(f"no layer named {unknown[0]!r} to leave unpruned; layers: {', '.join(sorted(known - {''}))}")
    return [(n, m) for n, m in model.named_modules()
            if is_prunable(m) and n not in names and id(m) not in mods]


def _weight(m: nn.Module) -> torch.Tensor:
    return m.weight_orig * m.weight_mask if hasattr(m, "weight_mask") else m.weight


def _pruned_count(m: nn.Module) -> int:
    return int((m.weight_mask == 0).sum()) if hasattr(m, "weight_mask") else 0


def prune_magnitude(model: nn.Module, sparsity: float, *, scope: str = "global",
                    optimizer: torch.optim.Optimizer | None = None,
                    ignore: Iterable[nn.Module | str] = ()) -> dict[str, float]:
    """Prune the smallest-magnitude weights until ``sparsity`` of them are zero.

    Returns each pruned layer's sparsity. The fraction counts the weights of the
    prunable layers (not biases); with ``scope="global"`` the layers end at
    different sparsities, the total at ``sparsity``.
    """
    sparsity = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise UsageError(f"invalid scope={scope!r}: expected one of {', '.join(SCOPES)}")
    layers = prunable(model, ignore)
    if not layers:
        raise UsageError(f"{type(model).__name__} has no Linear or Conv layer to prune")
    if scope == "global":
        total = sum(m.weight.numel() if not hasattr(m, "weight_mask") else m.weight_mask.numel() for _, m in layers)
        already = sum(_pruned_count(m) for _, m in layers)
        more = round(sparsity * total) - already
        if more < 0:
            raise UsageError(f"invalid sparsity={sparsity}: {already / total:.3f} of the weights are pruned already "
                             "(pruning does not grow weights back)")
        tprune.global_unstructured([(m, "weight") for _, m in layers], tprune.L1Unstructured, amount=int(more))
    else:
        for _, m in layers:
            n = m.weight_mask.numel() if hasattr(m, "weight_mask") else m.weight.numel()
            more = round(sparsity * n) - _pruned_count(m)
            if more < 0:
                raise UsageError(f"invalid sparsity={sparsity}: a layer is pruned further already")
            tprune.l1_unstructured(m, "weight", amount=int(more))
    if optimizer is not None:
        keep_pruned(optimizer, model)
    else:
        _zero_orig(model)
    return {n: float((m.weight_mask == 0).float().mean()) for n, m in layers}


@torch.no_grad()
def _zero_orig(model: nn.Module) -> None:
    for m in model.modules():
        if hasattr(m, "weight_mask") and hasattr(m, "weight_orig"):
            m.weight_orig.mul_(m.weight_mask)


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove ``torch.nn.utils.prune``'s re-parametrisation from every layer: each
    pruned ``weight`` becomes a plain parameter (the same tensor object) with
    zeros where it was pruned. The optimizer's masks, if any, stay in force."""
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, tprune.BasePruningMethod):
                tprune.remove(m, hook._tensor_name)
    return model


def sparsity_of(model: nn.Module, ignore: Iterable[nn.Module | str] = ()) -> float:
    """The fraction of zero weights among the prunable layers' weights."""
    layers = prunable(model, ignore)
    total = sum(_weight(m).numel() for _, m in layers)
    zeros = sum(int((_weight(m) == 0).sum()) for _, m in layers)
    return zeros / total if total else 0.0
