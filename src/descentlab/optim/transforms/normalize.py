"""NorMuon's pieces: a per-neuron (row-wise) second moment of the orthogonalized update.

NorMuon (Li et al., "NorMuon: Making Muon more efficient and scalable", 2025,
arXiv 2510.05491) observes that Muon's orthogonalized update ``O`` has equal
singular values but very unequal row norms, so some neurons move much more than
others. It keeps, per output neuron (row ``i`` of the weight seen as the matrix
``(out, −1)``), an EMA of the mean square of ``O``'s row, divides the row by
its root, and rescales the whole update (Algorithm 1 of the paper)::

    vᵢ ← β₂·vᵢ + (1 − β₂)·mean_j(O_ij²)
    Ô  = O / (√v + ε)                        (row i divided by √vᵢ + ε)
    Ô ← Ô · ‖O‖_F / (‖Ô‖_F + ε)             (update_scale="preserve_norm")
    Ô ← Ô · 0.2·√(m·n) / (‖Ô‖_F + ε)        (update_scale="match_rms": RMS 0.2)

``v`` has no bias correction (the rescaling makes its scale irrelevant). The
form is pytorch_optimizer 4.1.0's ``NorMuon`` (``preserve_norm`` is the
official code's default, ``match_rms`` the paper's Algorithm 1), whose
hyperparameter names are used: ``beta2``, ``eps``, ``update_scale``,
``use_adjusted_lr``.

``normuon`` (matrices) = ``ema_momentum → orthogonalize_via_newton_schulz →
scale_by_row_rms → scale_by_normuon_lr`` with decoupled weight decay.

On a shard of a DTensor parameter (FSDP2 splits dim 0) the rows of the local
update are this process's rows of the whole matrix (the orthogonalization
gathers, orthogonalizes and keeps its rows), so each row's statistic is
computed locally; the two Frobenius norms are computed from the rows' sums of
squares, gathered (``rows`` numbers per tensor), so the step is bit for bit
the 1-process step. The state ``second_momentum_buffer`` ``(rows, 1)`` is a
DTensor sharded on its rows like the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import sharded
from ..base import Hyper, Transform, boolean, learning_rate, one_of, positive, unit_interval
from .orthogonal import adjusted_lr_ratio

__all__ = ["ScaleByRowRms", "ScaleByNorMuonLr", "scale_by_row_rms", "scale_by_normuon_lr", "row_zeros"]

UPDATE_SCALES = ("preserve_norm", "match_rms")


def _row_layout(layout: sharded.Sharding) -> sharded.Sharding:
    """The layout of a ``(rows, 1)`` statistic of a tensor of ``layout``: split on its
    rows where the tensor is split on dim 0, replicated over the mesh dimensions
    that split another dimension."""
    for dim in range(1, len(layout.shape)):
        layout = layout.reduced(dim)  # Shard(d) for d >= 1 becomes Replicate
    return sharded.Sharding(layout.mesh, layout.placements, torch.Size([layout.shape[0], 1]), (1, 1))


def row_zeros(p: Tensor) -> Tensor:
    """Zeros of shape ``(p.size(0), 1)``: one statistic per row of ``p`` seen as the
    matrix ``(out, −1)``; for a DTensor ``p`` a DTensor of the layout of
    :func:`_row_layout` (split on its rows as ``p`` on dim 0)."""
    if not sharded.is_sharded([p]):
        return p.new_zeros(p.size(0), 1)
    local = sharded.local(p)
    return _row_layout(sharded.Sharding.of(p)).wrap(local.new_zeros(local.size(0), 1))


def _as_rows(u: Tensor) -> Tensor:
    """``u`` as the matrix ``(u.size(0), −1)`` (explicit columns: a shard may have 0 rows)."""
    return u.reshape(u.size(0), math.prod(u.shape[1:]))


def _frobenius(ts: list[Tensor], states: Sequence[Mapping[str, Any]]) -> list[Tensor]:
    """The Frobenius norm of each matrix (a 0-dim tensor), of the whole matrix for a shard.

    Computed as the square root of the sum of the rows' sums of squares, the
    rows of a shard gathered first (a ``(rows, 1)`` all-gather): the same
    operations on the same values with or without sharding, so a sharded step
    is bit for bit the 1-process step (which matters: Newton–Schulz in
    bfloat16 turns an ulp of difference in the weights into visible
    differences within 100 steps of a real model). pytorch_optimizer's
    ``update.norm()`` sums in another order (a difference of float32 rounding).
    """
    norms = []
    for t, state in zip(ts, states):
        rows = t.square().sum(dim=-1, keepdim=True)
        layout = sharded.sharding(state)
        if layout is not None:
            columns = range(1, len(layout.shape))
            if layout.groups_over(columns):  # columns split too: sum the row parts first
                (rows,) = sharded.all_reduce_sum([rows], [state], dims=columns)
            rows = _row_layout(layout).wrap(rows.contiguous()).full_tensor()
        norms.append(rows.sum().sqrt())
    return norms


def _row_mean_squares(flat: Tensor, p: Tensor, state: Mapping[str, Any]) -> Tensor:
    """``mean_j(flat_ij²)`` per row, over the whole row of the global matrix."""
    s = sharded.sharding(state)
    ndim = len(sharded.shape(p, state))
    if s is None or not s.groups_over(range(1, ndim)):
        return flat.square().mean(dim=-1, keepdim=True)  # rows are whole: local
    (total,) = sharded.all_reduce_sum([flat.square().sum(dim=-1, keepdim=True)], [state], dims=range(1, ndim))
    return total / math.prod(sharded.shape(p, state)[1:])


class ScaleByRowRms(Transform):
    """NorMuon's neuron-wise normalization of an orthogonalized update.

    See the module docstring for the rule (``beta2``, ``eps``,
    ``update_scale``). Any tensor of two or more dimensions is treated as the
    matrix ``(out, −1)``; its rows are the output neurons. State:
    ``second_momentum_buffer`` of shape ``(rows, 1)``, zeros at first, as
    pytorch_optimizer's NorMuon. ``eps`` must be > 0 (the reference takes 0,
    which makes an all-zero row ``0/0``). Reference: pytorch_optimizer.NorMuon.
    """

    hypers = {
        "beta2": Hyper(0.95, unit_interval),
        "eps": Hyper(1e-10, positive),
        "update_scale": Hyper("preserve_norm", one_of(*UPDATE_SCALES)),
    }
    state_keys = ("second_momentum_buffer",)

    def init_state(self, p, state, group):
        state["second_momentum_buffer"] = row_zeros(p)

    def update(self, updates, params, states, group, foreach):
        # One path: the norms of the whole group are all-reduced together on shards.
        return self._normalize(updates, params, states, group, foreach)

    def update_tensor(self, u, p, state, group):
        return self._normalize([u], [p], [state], group, False)[0]

    def update_foreach(self, updates, params, states, group):
        return self._normalize(updates, params, states, group, True)

    def _normalize(self, updates, params, states, group, foreach: bool) -> list[Tensor]:
        if not updates:
            return updates
        beta2, eps = self.hp(group, "beta2"), self.hp(group, "eps")
        flats = [_as_rows(u) for u in updates]
        before = _frobenius(flats, states)
        seconds = [s["second_momentum_buffer"] for s in states]
        means = [_row_mean_squares(f, p, s) for f, p, s in zip(flats, params, states)]
        if foreach:
            torch._foreach_lerp_(seconds, means, 1 - beta2)
            denominators = torch._foreach_sqrt(seconds)
            torch._foreach_add_(denominators, eps)
            outs = torch._foreach_div(flats, denominators)
        else:
            outs = []
            for f, v, m in zip(flats, seconds, means):
                v.lerp_(m, 1 - beta2)
                outs.append(f.div(v.sqrt().add_(eps)))
        after = _frobenius(outs, states)
        for n in after:
            n.add_(eps)
        if self.hp(group, "update_scale") == "preserve_norm":
            scales = [b / a for b, a in zip(before, after)]
        else:
            scales = [
                0.2 * math.sqrt(sharded.numel(p, s)) / a for p, s, a in zip(params, states, after)
            ]
        if foreach:
            torch._foreach_mul_(outs, scales)
        else:
            for o, scale in zip(outs, scales):
                o.mul_(scale)
        return [o.reshape(u.shape) for o, u in zip(outs, updates)]


class ScaleByNorMuonLr(Transform):
    """``u ← −lr·r·u``: NorMuon's learning rate.

    With ``update_scale="preserve_norm"`` ``r`` is Muon's shape adjustment of
    the weight seen as the matrix ``(A, B)`` = ``(out, −1)`` (global shape):
    ``√max(1, A/B)`` (Keller Jordan), or with ``use_adjusted_lr=True``
    ``0.2·√max(A, B)`` (Moonlight); see
    :func:`~descentlab.optim.transforms.orthogonal.adjusted_lr_ratio`. With
    ``"match_rms"`` the update already has RMS 0.2 and ``r = 1``. Decoupled
    weight decay uses the unadjusted lr. Reference: pytorch_optimizer.NorMuon.
    """

    after_direction = True  # cautious.with_cautious masks what comes before

    hypers = {
        "lr": Hyper(1e-3, learning_rate),
        "update_scale": Hyper("preserve_norm", one_of(*UPDATE_SCALES)),
        "use_adjusted_lr": Hyper(False, boolean),
    }

    def _step(self, p: Tensor, group: Mapping[str, Any], state: Mapping[str, Any]) -> float:
        lr = self.hp(group, "lr")
        if self.hp(group, "update_scale") != "preserve_norm":
            return -lr
        fn = "match_rms_adamw" if self.hp(group, "use_adjusted_lr") else "original"
        return -(lr * adjusted_lr_ratio(fn, sharded.shape(p, state)))

    def update_tensor(self, u, p, state, group):
        return u.mul(self._step(p, group, state))

    def update_foreach(self, updates, params, states, group):
        return torch._foreach_mul(updates, [self._step(p, group, s) for p, s in zip(params, states)])


scale_by_row_rms = ScaleByRowRms
scale_by_normuon_lr = ScaleByNorMuonLr
