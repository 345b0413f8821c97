"""NorMuon: Muon's orthogonalized momentum with a per-neuron second moment.

NorMuon (Li, Liu, Wang, Zhao, Chen, Zhang & Wang, "NorMuon: Making Muon more
efficient and scalable", 2025, arXiv 2510.05491) follows Muon's
orthogonalization by a row-wise (per output neuron) normalization with an EMA
of the rows' mean squares, then restores the update's norm. For a weight ``W``
seen as the matrix ``(out, −1)``, gradient ``g``::

    b ← μ·b + (1 − μ)·g;   u = (1 − μ)·g + μ·b  (nesterov) or b
    O = NewtonSchulz_bf16(u)                    (ns_coeffs, ns_steps)
    vᵢ ← β₂·vᵢ + (1 − β₂)·mean_j(O_ij²)
    Ô = O / (√v + ε);   Ô ← Ô·‖O‖_F / (‖Ô‖_F + ε)          (preserve_norm)
                        Ô ← Ô·0.2·√(m·n) / (‖Ô‖_F + ε)     (match_rms)
    W ← W − lr·weight_decay·W − lr·r·Ô

with ``r`` Muon's shape adjustment (preserve_norm; ``use_adjusted_lr`` picks
Moonlight's) or 1 (match_rms). The form, hyperparameter names and defaults are
pytorch_optimizer 4.1.0's ``NorMuon``, the reference it is tested against:
``lr=0.02, momentum=0.95, beta2=0.95, weight_decay=0, weight_decouple=True
(False: coupled L2 added to the gradient), nesterov=True, ns_steps=5,
ns_coeffs="original" (a triple, a per-iteration list, or "quintic",
"polar_express", "polar_express_safer"), update_scale="preserve_norm",
use_adjusted_lr=False, eps=1e-10`` (the normalization's ε).

As with ``muon``, ``optim.create("normuon", model.parameters())`` splits each
group: the tensors NorMuon takes (``use_muon=True``) and an AdamW fallback for
the rest (``use_muon=False``; ``adamw_lr=3e-4, adamw_betas=(0.9, 0.95),
adamw_wd=0, adamw_eps=1e-10``, the reference's names), each group with its own
``lr``, so schedulers act on both. A group that names ``use_muon`` is kept
whole (the reference requires ``use_muon`` in every group).

Which tensors: the reference orthogonalizes any tensor given to a
``use_muon=True`` group as the matrix ``(out, −1)`` ("pass higher dimensional
weights directly"), so ``nd="flatten"`` is the default here: 2-D and N-D
tensors (convolution kernels) go to NorMuon, 0-D and 1-D to AdamW;
``nd="adamw"`` sends N-D tensors to AdamW as ``muon`` does by default.

Differences from the reference, all outside its tested domain: the
Newton–Schulz ε is ``ns_eps`` (1e-7, fixed in the reference); 1-D tensors in a
``use_muon=True`` group are rejected (the reference treats a vector as an
``(n, 1)`` matrix); ``eps`` and ``adamw_eps`` must be > 0 and ``ns_steps`` may
be 0 (the reference accepts eps = 0 and needs ns_steps ≥ 1); the reference's
multi-tensor path batches equal shapes into one ``bmm`` Newton–Schulz, whose
bfloat16 rounding differs from its (and our) per-matrix path, which is what
both our paths equal.
"""

from __future__ import annotations

from ..base import Hyper, learning_rate, nonnegative, one_of
from ..registry import OptimizerSpec, register
from ..transforms import (
    add_l2,
    by_group,
    declare,
    decay_weights,
    ema_momentum,
    scale_by_adam,
    scale_by_lr,
)
from ..transforms.normalize import scale_by_row_rms, scale_by_normuon_lr
from ..transforms.orthogonal import OrthogonalizeViaNewtonSchulz
from .muon import ND_CHOICES, make_split_groups

ADAMW_DEFAULTS = {
    "adamw_lr": 3e-4,
    "adamw_betas": (0.9, 0.95),
    "adamw_wd": 0.0,
    "adamw_eps": 1e-10,
}

NORMUON_DEFAULTS = {
    "lr": 2e-2,
    "momentum": 0.95,
    "beta2": 0.95,
    "weight_decay": 0.0,
    "weight_decouple": True,
    "nesterov": True,
    "ns_steps": 5,
    "ns_coeffs": "original",
    "update_scale": "preserve_norm",
    "use_adjusted_lr": False,
    **ADAMW_DEFAULTS,
    "eps": 1e-10,
    "ns_eps": 1e-7,
    "nd": "flatten",
}


class OrthogonalizeWhole(OrthogonalizeViaNewtonSchulz):
    """:class:`OrthogonalizeViaNewtonSchulz` without ``split``: NorMuon
    orthogonalizes each weight as one matrix ``(out, −1)``, as its reference."""

    hypers = {k: v for k, v in OrthogonalizeViaNewtonSchulz.hypers.items() if k != "split"}


def _normuon_chain():
    """NorMuon or AdamW by the group's ``use_muon``; weight decay as the group's
    ``weight_decouple`` says (decoupled ``−lr·wd·p``, or ``wd·p`` added to the gradient)."""
    adamw_keys = {"betas": "adamw_betas", "eps": "adamw_eps", "amsgrad": "adamw_amsgrad"}
    return [
        declare(
            {
                "adamw_lr": Hyper(ADAMW_DEFAULTS["adamw_lr"], learning_rate),
                "adamw_wd": Hyper(ADAMW_DEFAULTS["adamw_wd"], nonnegative),
                "nd": Hyper("flatten", one_of(*ND_CHOICES)),
            }
        ),
        by_group("weight_decouple", if_true=[], if_false=[add_l2()]),
        by_group(
            "use_muon",
            if_true=[
                ema_momentum(),
                OrthogonalizeWhole(
                    keys={"ns_coefficients": "ns_coeffs", "eps": "ns_eps"}, ns_coefficients="original"
                ),
                scale_by_row_rms(),
                scale_by_normuon_lr(),
            ],
            if_false=[scale_by_adam(keys=adamw_keys), scale_by_lr()],
        ),
        by_group("weight_decouple", if_true=[decay_weights()], if_false=[]),
    ]


register(
    OptimizerSpec(
        name="normuon",
        summary="NorMuon: Muon with a per-neuron (row-wise) second-moment normalization; AdamW for 0-D/1-D params",
        defaults=NORMUON_DEFAULTS,
        build=_normuon_chain,
        reference="pytorch_optimizer.NorMuon (4.1.0; use_muon groups, AdamW groups with the adamw_* values)",
        paper="Li et al., 'NorMuon: Making Muon more efficient and scalable', arXiv 2510.05491, 2025",
        split_groups=make_split_groups("adamw_wd", split=False),
    )
)
