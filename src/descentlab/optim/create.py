"""`create(name, params, **hparams)` and `chain(params, *transforms, lr=...)`.

Regularization every optimizer takes, whatever its own ``weight_decay`` means
(coupled L2 for sgd/adam, decoupled for adamw/lion/muon, as their references):

* ``l1``: L1 penalty coefficient, adds ``l1·sign(p)`` to the gradient;
* ``l2``: coupled L2 coefficient, adds ``l2·p`` to the gradient;
* ``decoupled_decay``: AdamW-style decay ``p ← p − lr·decoupled_decay·p``;
* ``cautious``: mask the direction where it disagrees with the gradient
  (Liang et al. 2024; ``transforms/cautious.py``), e.g. C-AdamW, C-Lion;
* ``state_dtype``: ``"bfloat16"`` keeps the elementwise state in bfloat16
  with stochastic rounding (``lowprec.py``); None: the parameter's dtype;
* ``fused``: the one-pass fused step (``optim/fused``): ``None`` (default)
  uses it when the tensors allow and ``foreach`` is unset, ``True`` demands it
  (ValueError naming why where impossible), ``False`` forbids it;
* ``exclude_from_decay``: which parameters get none of these nor the
  optimizer's own ``weight_decay``. ``None`` (default, as the references):
  every parameter is decayed. Otherwise a rule of ``masks.py``: ``"auto"``
  (ndim ≤ 1: biases and normalization weights), name patterns such as
  ``["*.bias", "*norm*"]`` (pass ``model.named_parameters()``), or a callable
  ``(name, param) -> bool`` returning True for parameters to exclude.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import fused, reference
from .base import Transform
from .chain import ChainOptimizer
from .params import DECAY_KEYS, Exclude, as_groups, split_decay  # noqa: F401  (DECAY_KEYS, Exclude: re-exported)
from .transforms.regularize import AddL1, AddL2, DecayWeights
from .transforms.cautious import with_cautious
from .transforms.scale import ScaleByLr

#: Options every named optimizer accepts besides its own hyperparameters.
UNIVERSAL = {
    "l1": 0.0,
    "l2": 0.0,
    "decoupled_decay": 0.0,
    "foreach": None,
    "maximize": False,
    "fused": None,
    "cautious": False,
    "state_dtype": None,
}


def _regularized(transforms: Sequence[Transform]) -> list[Transform]:
    """Wrap a named chain with the universal L1, L2 and decoupled-decay options."""
    return [
        AddL1(),
        AddL2(keys={"weight_decay": "l2"}),
        *transforms,
        DecayWeights(keys={"weight_decay": "decoupled_decay"}),
    ]


def create(name: Any, params: Iterable[Any], **hparams: Any) -> torch.optim.Optimizer:
    """A named optimizer, e.g. ``create("adamw", model.parameters(), lr=3e-4)``.

    ``name`` may also be any optimizer (:mod:`.reference`): ``"torch.optim:AdamW"``,
    ``"path/to/file.py:MyOpt"``, an entry point's name, or the class or factory
    itself; its hyperparameters go to its constructor, and ``l1``, ``l2``,
    ``decoupled_decay`` and ``exclude_from_decay`` work on it as here.

    ``hparams`` are the reference's hyperparameters (see ``descentlab list
    optimizers`` and each optimizer's docstring) plus the universal options of
    this module. ``lr`` may be a 0-dim floating-point tensor, as with
    torch.optim; schedulers then update it in place. An unknown name raises
    ValueError listing close matches; an unknown or invalid hyperparameter
    raises TypeError or ValueError naming it.
    """
    spec = reference.lookup(name)
    if isinstance(spec, reference.ForeignOptimizer):
        return spec.create(params, **hparams)
    exclude = hparams.pop("exclude_from_decay", None)
    allowed = {**spec.defaults, **UNIVERSAL}
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise TypeError(
            f"{spec.name} got unknown hyperparameter(s) {unknown}; it takes "
            f"{sorted(allowed)} and exclude_from_decay"
        )
    values = {**allowed, **hparams}
    groups = split_decay(as_groups(params), exclude)
    if spec.split_groups is not None:
        groups = spec.split_groups(groups, values)
    return ChainOptimizer(
        groups,
        _regularized(with_cautious(spec.build())),
        values,
        name=spec.name,
        fused_step=spec.fused_step or fused.fused_step_for(spec.name),
    )


def chain(
    params: Iterable[Any], *transforms: Transform, lr: float | Tensor = 1e-3, **hparams: Any
) -> ChainOptimizer:
    """An optimizer from transforms, with ``scale_by_lr`` appended.

    ``chain(model.parameters(), clip_by_global_norm(max_norm=1.0),
    scale_by_adam(), add_decayed_weights(weight_decay=0.01), lr=1e-3)`` is
    AdamW with clipping. ``hparams`` override the transforms' defaults.
    """
    return ChainOptimizer(params, [*transforms, ScaleByLr()], {"lr": lr, **hparams})
