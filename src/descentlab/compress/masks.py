"""Pruning masks that reach the optimizer: a pruned weight stays exactly zero.

``torch.nn.utils.prune`` keeps the mask outside the optimizer: the module
computes ``weight = weight_orig * weight_mask`` in a forward pre-hook, so the
model's output honours the mask, but the optimizer steps ``weight_orig`` — with
momentum and Adam moments accumulated before the prune, and with decoupled
weight decay — and the pruned entries of the parameter drift. Once the
re-parametrisation is removed (``prune.remove``, or a weight loaded elsewhere)
gradients reach the pruned entries too and momentum revives them.

:func:`keep_pruned` closes that gap for any ``torch.optim.Optimizer`` — every
named optimizer of descentlab, fused kernels included, and torch's own:

* when masks are attached or change, the pruned entries of the parameter and
  of every optimizer state tensor of the parameter's shape (momentum buffers,
  Adam's moments, AMSGrad's maximum, schedule-free's ``z``, Prodigy's ``p0``)
  are set to zero;
* before each step, the pruned entries of the gradient are set to zero, so
  elementwise optimizers keep a zero state there and move nothing;
* after each step, the pruned entries of the parameter are set to zero again,
  for optimizers whose update mixes entries (Muon's orthogonalisation,
  Adafactor's factored second moment) or adds to all of them.

The step hooks are torch's own (``register_step_pre_hook`` /
``register_step_post_hook``), so the optimizer's step itself — a fused CPU
kernel, say — runs unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

_ATTR = "_descentlab_pruning_masks"


class OptimizerMasks:
    """The masks of one optimizer's parameters and the hooks that enforce them."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.masks: dict[int, tuple[Tensor, Tensor]] = {}  # id(param) -> (param, mask)
        self._hooks = [optimizer.register_step_pre_hook(self._before),
                       optimizer.register_step_post_hook(self._after)]

    def set(self, masks: Mapping[Tensor, Tensor]) -> None:
        """Replace the masks (``{param: mask}``, mask 1 = kept, 0 = pruned) and zero
        the pruned entries of the parameters and of their optimizer state."""
        params = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        new: dict[int, tuple[Tensor, Tensor]] = {}
        for p, m in masks.items():
            if id(p) not in params:
                continue  # a pruned layer this optimizer does not train
            if m.shape != p.shape:
                raise ValueError(f"a mask of shape {tuple(m.shape)} for a parameter of shape {tuple(p.shape)}")
            new[id(p)] = (p, m.detach().to(device=p.device, dtype=p.dtype))
        self.masks = new
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned entries of the parameters and of their state tensors."""
        rotated = getattr(self.optimizer, "rotated_state_keys", frozenset())
        for p, m in self.masks.values():
            p.mul_(m)
            for key, value in self.optimizer.state.get(p, {}).items():
                if (isinstance(value, Tensor) and value.shape == p.shape and value.is_floating_point()
                        and key not in rotated):
                    value.mul_(m)

    @torch.no_grad()
    def _before(self, optimizer, args, kwargs) -> None:
        for p, m in self.masks.values():
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def _after(self, optimizer, args, kwargs) -> None:
        for p, m in self.masks.values():
            p.mul_(m)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self.masks = {}
        if getattr(self.optimizer, _ATTR, None) is self:
            delattr(self.optimizer, _ATTR)


def masks_of(model: nn.Module) -> dict[Tensor, Tensor]:
    """``{parameter: mask}`` of every tensor ``torch.nn.utils.prune`` pruned in ``model``
    (the parameter is the ``*_orig`` one that the optimizer steps)."""
    out: dict[Tensor, Tensor] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):
                mask = getattr(module, name[: -len("_orig")] + "_mask", None)
                if isinstance(mask, Tensor):
                    out[p] = mask
    return out


def keep_pruned(optimizer: torch.optim.Optimizer, model: nn.Module | None = None, *,
                masks: Mapping[Tensor, Tensor] | None = None) -> OptimizerMasks:
    """Make ``optimizer`` keep the pruned weights of ``model`` (or the given
    ``masks``, ``{param: 0/1 tensor}``) exactly zero from now on; call it again
    after every prune (it updates the masks of the same hooks).

    Masks kept this way survive ``make_permanent``: the optimizer holds them, not
    the module. Returns the :class:`OptimizerMasks` (``.remove()`` detaches it).
    """
    if (model is None) == (masks is None):
        raise TypeError("keep_pruned needs a model (its torch.nn.utils.prune masks) or masks=, not both")
    found = masks if masks is not None else masks_of(model)
    handle = getattr(optimizer, _ATTR, None)
    if handle is None:
        handle = OptimizerMasks(optimizer)
        setattr(optimizer, _ATTR, handle)
    if model is not None and not found and handle.masks:
        return handle  # made permanent since: keep the masks the optimizer has
    handle.set(found)
    return handle


def attached(optimizer: torch.optim.Optimizer) -> OptimizerMasks | None:
    """The masks :func:`keep_pruned` attached to ``optimizer``, if any."""
    return getattr(optimizer, _ATTR, None)
