"""Regularization transforms: L1, coupled L2 and decoupled weight decay.

* Coupled L2 (``add_l2``) adds ``λ·p`` to the gradient *before* the adaptive
  scaling, i.e. it is the gradient of the penalty ``λ/2·‖p‖²`` added to the
  loss. This is what ``weight_decay`` means in torch.optim.SGD and Adam.
* Decoupled weight decay (``add_decayed_weights`` before ``scale_by_lr``, or
  ``decay_weights`` after it) shrinks the weights directly, ``p ← p − lr·λ·p``,
  untouched by the adaptive scaling: Loshchilov & Hutter, "Decoupled Weight
  Decay Regularization", ICLR 2019. Under Adam the two differ; under plain SGD
  they coincide.
* L1 (``add_l1``) adds ``λ·sign(p)``, the subgradient of ``λ·‖p‖₁``; it drives
  weights to (near) zero, which L2 does not.

A coefficient of 0 makes each of them a no-op that costs nothing.
"""

from __future__ import annotations

import torch

from ..base import Hyper, Transform, learning_rate, nonnegative

__all__ = [
    "AddL1",
    "AddL2",
    "AddDecayedWeights",
    "DecayWeights",
    "add_l1",
    "add_l2",
    "add_decayed_weights",
    "decay_weights",
]


class AddL1(Transform):
    """``u ← u + λ·sign(p)`` (group key ``l1``): the L1 penalty's subgradient."""

    hypers = {"l1": Hyper(0.0, nonnegative)}

    def update_tensor(self, u, p, state, group):
        lam = self.hp(group, "l1")
        return u if lam == 0 else u.add(torch.sign(p), alpha=lam)

    def update_foreach(self, updates, params, states, group):
        lam = self.hp(group, "l1")
        if lam == 0:
            return updates
        return torch._foreach_add(updates, torch._foreach_sign(params), alpha=lam)


class AddL2(Transform):
    """``u ← u + λ·p``: coupled L2, the gradient of ``λ/2·‖p‖²``.

    Reads group key ``weight_decay`` (torch's name for it in SGD and Adam); the
    universal option of ``optim.create`` maps it to ``l2``.
    """

    hypers = {"weight_decay": Hyper(0.0, nonnegative)}

    def update_tensor(self, u, p, state, group):
        lam = self.hp(group, "weight_decay")
        return u if lam == 0 else u.add(p, alpha=lam)

    def update_foreach(self, updates, params, states, group):
        lam = self.hp(group, "weight_decay")
        return updates if lam == 0 else torch._foreach_add(updates, params, alpha=lam)


class AddDecayedWeights(AddL2):
    """``u ← u + λ·p`` placed *after* the adaptive scaling and before
    ``scale_by_lr``: decoupled weight decay, ``p ← p − lr·(u + λ·p)`` (AdamW).

    The arithmetic is that of ``add_l2``; its place in the chain is what makes
    it decoupled.
    """


class DecayWeights(Transform):
    """``u ← u − lr·λ·p``, placed after ``scale_by_lr``: decoupled decay for any chain.

    Reads ``weight_decay`` and ``lr``; ``optim.create`` uses it for the
    universal ``decoupled_decay`` option, so every optimizer can have AdamW-style
    decay whatever its own ``weight_decay`` means.
    """

    hypers = {"weight_decay": Hyper(0.0, nonnegative), "lr": Hyper(1e-3, learning_rate)}

    def update_tensor(self, u, p, state, group):
        lam = self.hp(group, "weight_decay") * self.hp(group, "lr")
        return u if lam == 0 else u.add(p, alpha=-lam)

    def update_foreach(self, updates, params, states, group):
        lam = self.hp(group, "weight_decay") * self.hp(group, "lr")
        return updates if lam == 0 else torch._foreach_add(updates, params, alpha=-lam)


add_l1 = AddL1
add_l2 = AddL2
add_decayed_weights = AddDecayedWeights
decay_weights = DecayWeights
