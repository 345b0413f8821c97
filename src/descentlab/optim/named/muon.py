"""Muon for the 2-D weights, AdamW for every other parameter.

Muon (Jordan et al. 2024) is defined for 2-D weight matrices only, and
torch.optim.Muon rejects anything else. ``optim.create("muon", model.parameters())``
accepts any model: ``split_groups`` splits each param group into

* the 2-D parameters, optimized by Muon exactly as torch.optim.Muon
  (``use_muon=True``; hyperparameters ``lr``, ``weight_decay``, ``momentum``,
  ``nesterov``, ``ns_coefficients``, ``eps``, ``ns_steps``, ``adjust_lr_fn``,
  torch's names and defaults)::

      b ← μ·b + (1 − μ)·g;   u = (1 − μ)·g + μ·b  (nesterov) or b
      O = NewtonSchulz_bf16(u)
      p ← p − lr·weight_decay·p − lr·r(shape)·O

* everything else (biases, norm gains, scalars, and tensors with more than two
  dimensions such as convolution filters, which torch's Muon does not take),
  optimized by AdamW exactly as torch.optim.AdamW (``use_muon=False``), with
  its own hyperparameters ``adamw_lr``, ``adamw_betas``, ``adamw_eps`` and
  ``adamw_weight_decay``.

The fallback defaults — adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_eps=1e-10,
adamw_weight_decay=0 — are those of the Adam groups of Keller Jordan's
``MuonWithAuxAdam`` (github.com/KellerJordan/Muon, muon.py); Moonlight
(MoonshotAI, "Muon is Scalable for LLM Training") uses the same betas.

The AdamW part of a group becomes a param group of its own whose ``lr`` and
``weight_decay`` are set from ``adamw_lr`` and ``adamw_weight_decay`` (the
group's own ``adamw_*`` values if it has them), so an LR scheduler scales Muon's
and AdamW's learning rates alike, and ``param_groups`` shows the values in use.
A group that sets ``weight_decay`` to 0 itself (as ``exclude_from_decay`` does)
gives its AdamW part no decay either, unless it sets ``adamw_weight_decay``.

Which parameters: the ndim == 2 rule is the usual one, but Jordan recommends
AdamW also for the embedding and the classifier head, which are 2-D: pass them
in a group of their own with ``use_muon=False`` (a group that has ``use_muon``
is not split; ``use_muon=True`` with a parameter Muon does not take raises
ValueError).

Beyond torch.optim.Muon (options of ours; the defaults change nothing):

* ``nd``: what happens to tensors of more than two dimensions (convolution
  kernels). ``"adamw"`` (default): the AdamW fallback, as above. ``"flatten"``:
  Muon, on the matrix ``(out, in·kh·kw…)`` (Keller Jordan's Muon does this for
  conv filters), reshaped back; the lr adjustment uses the flattened shape, so
  the step equals torch.optim.Muon's on the flattened 2-D view. Per group.
* ``split``: None (default), an integer k, or a list of row counts: the rows
  of each Muon weight of the group are cut into blocks orthogonalized (and
  their lr adjusted) separately, for fused QKV ``(3d, d)`` (``split=3``) or
  per-head weights: the step equals torch.optim.Muon's on the separate
  blocks. Blocks that do not add up to a weight's rows raise ValueError
  naming the value, at ``optim.create``. Give it in the group of the fused
  weights only (``{"params": [qkv], "split": 3}``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..base import Hyper, learning_rate, nonnegative, one_of
from ..registry import OptimizerSpec, register
from ..transforms import (
    by_group,
    declare,
    decay_weights,
    ema_momentum,
    orthogonalize_via_newton_schulz,
    scale_by_adam,
    scale_by_adjusted_lr,
    scale_by_lr,
)
from ..transforms.orthogonal import NS_COEFFICIENTS, block_rows, split_option

#: The AdamW fallback's hyperparameters (Keller Jordan's MuonWithAuxAdam Adam groups).
ADAMW_DEFAULTS = {
    "adamw_lr": 3e-4,
    "adamw_betas": (0.9, 0.95),
    "adamw_eps": 1e-10,
    "adamw_weight_decay": 0.0,
}

MUON_DEFAULTS = {
    "lr": 1e-3,
    "weight_decay": 0.1,
    "momentum": 0.95,
    "nesterov": True,
    "ns_coefficients": NS_COEFFICIENTS,
    "eps": 1e-7,
    "ns_steps": 5,
    "adjust_lr_fn": None,
    **ADAMW_DEFAULTS,
    "nd": "adamw",
    "split": None,
}

#: What ``nd`` may say about tensors of more than two dimensions.
ND_CHOICES = ("adamw", "flatten")


def _muon_chain():
    """Muon or AdamW by the group's ``use_muon``, then decoupled decay ``−lr·wd·p``.

    The AdamW branch reads ``adamw_betas``/``adamw_eps``/``adamw_amsgrad`` so
    that they do not collide with Muon's ``eps``; its ``lr`` and
    ``weight_decay`` are the group's (see ``_split_groups``). ``adamw_lr`` and
    ``adamw_weight_decay`` are declared for ``_split_groups``.
    """
    adamw_keys = {"betas": "adamw_betas", "eps": "adamw_eps", "amsgrad": "adamw_amsgrad"}
    return [
        declare(
            {
                "adamw_lr": Hyper(ADAMW_DEFAULTS["adamw_lr"], learning_rate),
                "adamw_weight_decay": Hyper(ADAMW_DEFAULTS["adamw_weight_decay"], nonnegative),
                "nd": Hyper("adamw", one_of(*ND_CHOICES)),
            }
        ),
        by_group(
            "use_muon",
            if_true=[ema_momentum(), orthogonalize_via_newton_schulz(), scale_by_adjusted_lr()],
            if_false=[scale_by_adam(keys=adamw_keys), scale_by_lr()],
        ),
        decay_weights(),
    ]


def _check(key: str, value: Any) -> None:
    message = (learning_rate if key == "lr" else nonnegative)(value)
    if message:
        raise ValueError(f"invalid {key}={value!r}: expected {message}")


def _adamw_group(
    group: dict[str, Any], values: dict[str, Any], explicit: bool, wd_key: str = "adamw_weight_decay"
) -> dict[str, Any]:
    """The AdamW version of ``group``: its lr and weight_decay from the adamw_* values.

    ``explicit``: the user marked the group ``use_muon=False``, so its own
    ``lr``/``weight_decay`` (if given) are AdamW's. ``wd_key``: the name of the
    fallback's weight decay (``adamw_weight_decay`` here, ``adamw_wd`` in normuon).
    """
    if explicit:
        lr = group.get("lr", group.get("adamw_lr", values["adamw_lr"]))
        wd = group.get("weight_decay", group.get(wd_key, values[wd_key]))
    else:
        # The group's lr and weight_decay are Muon's; check them here too, since
        # they are replaced (a group of 1-D params only would drop them unseen).
        for key in ("lr", "weight_decay"):
            _check(key, group.get(key, values[key]))
        lr = group.get("adamw_lr", values["adamw_lr"])
        if wd_key in group:
            wd = group[wd_key]
        elif group.get("weight_decay", None) == 0:
            wd = 0.0  # decay switched off for this group (e.g. by exclude_from_decay)
        else:
            wd = values[wd_key]
    return {**group, "use_muon": False, "lr": lr, "weight_decay": wd}


def _nd(group: dict[str, Any], values: dict[str, Any]) -> str:
    nd = group.get("nd", values["nd"])
    if nd not in ND_CHOICES:
        raise ValueError(f"invalid nd={nd!r}: expected one of {', '.join(map(repr, ND_CHOICES))}")
    return nd


def takes(p: Any, nd: str) -> bool:
    """Whether Muon takes the tensor ``p`` (2-D, or N-D flattened when ``nd="flatten"``)."""
    return p.ndim == 2 or (p.ndim > 2 and nd == "flatten")


def _require_muon_shape(item: Any, nd: str) -> None:
    name, p = item if isinstance(item, tuple) else (None, item)
    if not takes(p, nd):
        label = f"parameter {name!r}" if name else "parameter"
        if p.ndim > 2:
            raise ValueError(
                f"invalid {label} of shape {tuple(p.shape)} in a group with use_muon=True and "
                f"nd={nd!r}: expected a 2-D weight; set nd='flatten' to orthogonalize it as the "
                f"matrix {(p.shape[0], p[0].numel())}, or put it in a group with use_muon=False"
            )
        raise ValueError(
            f"invalid {label} of shape {tuple(p.shape)} in a group with use_muon=True: expected a "
            "2-D weight (Muon orthogonalizes matrices); put it in a group with use_muon=False, "
            "or leave use_muon out and let optim.create route it to AdamW"
        )


def _check_split(group: dict[str, Any], values: dict[str, Any]) -> None:
    """Raise ValueError now (not at the first step) when ``split`` does not fit a weight's rows."""
    split = group.get("split", values.get("split"))
    if split is None:
        return
    message = split_option(split)
    if message:
        raise ValueError(f"invalid split={split!r}: expected {message}")
    for item in group["params"]:
        p = item[1] if isinstance(item, tuple) else item
        block_rows(split, p.shape)


def make_split_groups(wd_key: str = "adamw_weight_decay", split: bool = True):
    """The ``split_groups`` of a Muon-like optimizer whose AdamW fallback's
    weight decay is named ``wd_key`` (see :func:`_adamw_group`); ``split``:
    whether it has the ``split`` option (checked against the weights' rows here)."""
    check_split = _check_split if split else (lambda group, values: None)

    def split_groups(groups: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
        """Split each group into the tensors Muon takes (2-D; N-D too when
        ``nd="flatten"``) and the rest (AdamW).

        A group that names ``use_muon`` is kept whole. Empty parts are left out.
        """
        out: list[dict[str, Any]] = []
        for group in groups:
            params = group["params"]
            params = [params] if isinstance(params, Tensor) else list(params)
            nd = _nd(group, values)
            if "use_muon" in group:
                if group["use_muon"] is True:
                    for item in params:
                        _require_muon_shape(item, nd)
                    check_split({**group, "params": params}, values)
                if group["use_muon"] is False:
                    out.append(_adamw_group(group, values, True, wd_key))
                else:
                    out.append(dict(group))
                continue
            matrices, rest = [], []
            for item in params:
                p = item[1] if isinstance(item, tuple) else item
                (matrices if takes(p, nd) else rest).append(item)
            if matrices or not params:
                muon = {**group, "params": matrices, "use_muon": True}
                check_split(muon, values)
                out.append(muon)
            if rest:
                out.append(_adamw_group({**group, "params": rest}, values, False, wd_key))
        return out

    return split_groups


_split_groups = make_split_groups()


register(
    OptimizerSpec(
        name="muon",
        summary="Muon: orthogonalized (Newton–Schulz) momentum for 2-D weights; AdamW for the other params",
        defaults=MUON_DEFAULTS,
        build=_muon_chain,
        reference="torch.optim.Muon (2-D weights); torch.optim.AdamW with the adamw_* values (the rest)",
        paper=(
            "Jordan et al., 'Muon: An optimizer for hidden layers in neural networks', 2024; "
            "Liu et al., 'Muon is Scalable for LLM Training', 2025"
        ),
        split_groups=_split_groups,
    )
)
