"""Smaller models that keep their accuracy: pruning and knowledge distillation.

Unstructured magnitude pruning (layer-wise or global, on ``torch.nn.utils.prune``),
gradual pruning on Zhu & Gupta's cubic schedule, structured channel pruning on
Torch-Pruning's dependency graph with the optimizer's state carried across, and
Hinton et al.'s knowledge distillation. See docs/compress.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # pruning
    "prune_magnitude": ".magnitude", "make_permanent": ".magnitude", "prunable": ".magnitude",
    "sparsity_of": ".magnitude",
    "keep_pruned": ".masks",
    "cubic_sparsity": ".gradual", "GradualPruning": ".gradual",
    "prune_channels": ".structured", "ChannelPruner": ".structured", "ChannelPruning": ".structured",
    "save_model": ".saved", "load_model": ".saved",
    "prune": ".prune_run", "PruneResult": ".prune_run",
    # distillation
    "distillation_loss": ".distill", "DistillationLoss": ".distill", "Distiller": ".distill",
    "token_distillation_loss": ".distill", "token_cross_entropy": ".distill", "layout_of": ".logits",
    "resolve_arch": ".arch",
    "distill": ".distill_run", "DistillResult": ".distill_run",
    # costs
    "parameters": ".measure", "nonzero_parameters": ".measure", "flops_per_sample": ".measure",
    "latency": ".measure",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
