"""Muon's pieces: momentum, Newton–Schulz orthogonalization, shape-adjusted lr.

Muon (Jordan et al., "Muon: An optimizer for hidden layers in neural
networks", 2024, https://kellerjordan.github.io/posts/muon/) replaces a 2-D
weight's momentum ``B`` by the nearest semi-orthogonal matrix ``UVᵀ`` (with
``B = USVᵀ``), approximated by a few Newton–Schulz iterations, so that every
singular direction of the update gets the same size. The form implemented is
torch.optim.Muon's (torch 2.9+), which follows Keller Jordan's reference code.

``muon`` (2-D weights) = ``ema_momentum → orthogonalize_via_newton_schulz →
scale_by_adjusted_lr`` followed by decoupled weight decay.

Beyond torch's Muon (which takes 2-D tensors only):

* a tensor with more than two dimensions (a convolution kernel ``(out, in,
  kh, kw)``) is orthogonalized as the matrix ``(out, in·kh·kw)`` and reshaped
  back, as Keller Jordan's reference does for 4-D filters
  (github.com/KellerJordan/Muon, ``update.view(len(update), -1)``); the lr
  adjustment uses that flattened shape (pytorch_optimizer's
  ``get_adjusted_lr`` does too; Keller Jordan's code takes the last two
  dimensions of the unflattened tensor, ``kh/kw``, for a conv filter);
* ``split``: the rows of a fused weight (QKV ``(3d, d)``, or per-head blocks)
  are cut into blocks, each orthogonalized, and its lr adjusted, as a matrix
  of its own, so a fused QKV weight steps as three separate ``d×d`` weights;
* ``ns_coefficients`` may also be a schedule (a list of triples, one per
  iteration, the last repeated) or a preset name (:data:`NS_PRESETS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import sharded
from ..base import (
    Hyper,
    Transform,
    _is_real,
    boolean,
    learning_rate,
    one_of,
    positive,
    unit_interval,
)

__all__ = [
    "EmaMomentum",
    "OrthogonalizeViaNewtonSchulz",
    "ScaleByAdjustedLr",
    "ema_momentum",
    "orthogonalize_via_newton_schulz",
    "scale_by_adjusted_lr",
    "newton_schulz",
    "newton_schulz_bf16_",
    "adjusted_lr_ratio",
    "block_rows",
    "split_option",
    "ns_schedule",
    "NS_PRESETS",
]

#: Keller Jordan's quintic coefficients (a, b, c), chosen to maximize the slope at zero.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

#: Named coefficient schedules (one triple per iteration, the last one repeated),
#: under the names pytorch_optimizer 4.1.0 gives them (``ns_coeffs`` of its NorMuon):
#: "original" (Keller Jordan, 2024); "quintic" (the tuned per-step schedule of
#: modded-nanogpt, github.com/KellerJordan/modded-nanogpt); "polar_express" and
#: "polar_express_safer" (Amsel, Persson, Musco & Gower, "The Polar Express: Optimal
#: Matrix Sign Methods and Their Application to the Muon Algorithm", arXiv
#: 2505.16932, 2025, with safety factors 1e-2 and 2e-2).
NS_PRESETS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "original": (NS_COEFFICIENTS,),
    "quintic": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
    "polar_express": (
        (8.237312490495555, -23.157747414558198, 16.680568411445915),
        (4.082441999064835, -2.893047735332586, 0.5252849256975648),
        (3.9263479922546582, -2.8547468034765298, 0.5318022422894988),
        (3.2982187133085143, -2.424541981026706, 0.48632008358844075),
        (2.2970369434552573, -1.63662558125903, 0.4002628455953627),
        (1.8763805351440397, -1.2347896577722228, 0.35891887501668385),
        (1.8564423485617974, -1.2132449880935525, 0.3568003487825883),
        (1.8749994008682747, -1.2499988017229169, 0.3749994008546422),
    ),
    "polar_express_safer": (
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.0429299351667245, -2.808917465908704, 0.5000178451051299),
        (3.8916678022926563, -2.7724841532176825, 0.5060648178503389),
        (3.285753657755658, -2.3681294933425394, 0.46449024233003117),
        (2.3005307116270983, -1.6111665557258408, 0.3833374427545273),
        (1.8631210546382593, -1.2042160621002727, 0.3421879560523383),
        (1.8382572152247512, -1.1779263289537742, 0.3396513038637379),
        (1.8749999923301852, -1.2499999836060613, 0.374999991275876),
    ),
}


def _is_triple(value: Any) -> bool:
    return (
        not isinstance(value, (str, bytes))
        and isinstance(value, Sequence)
        and len(value) == 3
        and all(_is_real(c) and math.isfinite(c) for c in value)
    )


def _coefficients(value: Any) -> str | None:
    if isinstance(value, str):
        ok = value.lower() in NS_PRESETS
    else:
        ok = _is_triple(value) or (
            isinstance(value, Sequence) and len(value) > 0 and all(_is_triple(v) for v in value)
        )
    if not ok:
        return (
            "a triple (a, b, c) of finite numbers, a non-empty list of such triples (one per "
            f"iteration, the last repeated), or one of {', '.join(map(repr, NS_PRESETS))}"
        )
    return None


def ns_schedule(coefficients: Any, steps: int) -> list[tuple[float, float, float]]:
    """The ``steps`` triples (a, b, c) of the iteration: a triple is used at every
    step; a list gives one per step, its last one repeated; a name is a
    :data:`NS_PRESETS` schedule."""
    if isinstance(coefficients, str):
        schedule = NS_PRESETS[coefficients.lower()]
    elif _is_triple(coefficients):
        schedule = (coefficients,)
    else:
        schedule = tuple(coefficients)
    return [tuple(schedule[min(i, len(schedule) - 1)]) for i in range(steps)]


def split_option(value: Any) -> str | None:
    """The check of ``split``: None, an integer k >= 1, or a non-empty list of row counts >= 1."""
    if value is None:
        return None
    if _is_int(value) and value >= 1:
        return None
    if (
        not isinstance(value, (str, bytes))
        and isinstance(value, Sequence)
        and len(value) > 0
        and all(_is_int(v) and v >= 1 for v in value)
    ):
        return None
    return "None, an integer k >= 1 (k blocks of equal rows) or a list of row counts >= 1"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def block_rows(split: Any, shape: Sequence[int], key: str = "split") -> list[int] | None:
    """The row counts of the blocks that ``split`` cuts a weight of ``shape`` into.

    ``None`` or ``1``: None (the whole matrix); an integer k: k blocks of
    ``rows/k`` rows; a list: those row counts. ValueError naming the value and
    the shape when they do not add up to the weight's rows (its global rows:
    pass the global shape of a shard).
    """
    if split is None or split == 1:
        return None
    rows = shape[0]
    if _is_int(split):
        if rows % split:
            raise ValueError(
                f"invalid {key}={split!r}: a weight of shape {tuple(shape)} has {rows} rows, "
                f"which do not divide into {split} equal blocks"
            )
        return [rows // split] * split
    blocks = [int(n) for n in split]
    if sum(blocks) != rows:
        raise ValueError(
            f"invalid {key}={split!r}: the row counts add up to {sum(blocks)}, but a weight of "
            f"shape {tuple(shape)} has {rows} rows"
        )
    return blocks


def _ns_steps(value: Any) -> str | None:
    # torch rejects >= 100 ("for computational efficiency"); 0 steps is the
    # normalized momentum, which torch accepts too.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 100:
        return "an integer in [0, 100)"
    return None


class EmaMomentum(Transform):
    """Momentum as an exponential moving average, with a Nesterov look-ahead.

    With ``μ = momentum``::

        bₜ = μ·bₜ₋₁ + (1 − μ)·gₜ        (buffer, computed as lerp(b, g, 1 − μ))
        u  = (1 − μ)·gₜ + μ·bₜ          (nesterov, computed as lerp(g, b, μ))
        u  = bₜ                         (otherwise)

    This is the form torch.optim.Muon and Keller Jordan's Muon implement; their
    docstrings write ``bₜ = μ·bₜ₋₁ + g`` (heavy ball, as torch.optim.SGD's
    ``trace``), which differs from the code by the factor (1 − μ) on g. The
    EMA form is implemented. Under Muon the overall scale of u does not matter
    (the orthogonalization normalizes it) but the relative weight of g and b
    does. Reference: torch.optim.Muon. State: ``momentum_buffer`` (zeros at
    first), as torch.
    """

    hypers = {"momentum": Hyper(0.95, unit_interval), "nesterov": Hyper(True, boolean)}
    state_keys = ("momentum_buffer",)

    def init_state(self, p, state, group):
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def update_tensor(self, u, p, state, group):
        mu = self.hp(group, "momentum")
        buf = state["momentum_buffer"]
        buf.lerp_(u, 1 - mu)
        # The buffer itself is returned without nesterov: later transforms never
        # write into their input (the Transform contract).
        return u.lerp(buf, mu) if self.hp(group, "nesterov") else buf

    def update_foreach(self, updates, params, states, group):
        mu = self.hp(group, "momentum")
        bufs = [s["momentum_buffer"] for s in states]
        torch._foreach_lerp_(bufs, updates, 1 - mu)
        if not self.hp(group, "nesterov"):
            return bufs
        return torch._foreach_lerp(updates, bufs, mu)


def newton_schulz(
    g: Tensor, coefficients: Any, steps: int, eps: float, rows: Sequence[int] | None = None
) -> Tensor:
    """The quintic Newton–Schulz iteration of torch.optim.Muon, in bfloat16.

    For a wide ``X`` (a tall one is transposed first and back at the end)::

        X ← X / max(‖X‖_F, eps)              (spectral norm ≤ 1)
        repeat steps times:
            A = X·Xᵀ
            X ← a·X + (b·A + c·A²)·X

    which pushes every singular value of X towards ~1 (to roughly [0.7, 1.2]
    with the default coefficients, not exactly 1: Jordan et al. found that
    harmless). As torch and Keller Jordan do, it runs in bfloat16, whatever the
    dtype of ``g``, with the same operations in the same order (so the result is
    bitwise torch's); the result is returned in bfloat16. ``g`` is not modified.

    ``coefficients``: a triple, a schedule or a preset name (:func:`ns_schedule`).
    A tensor of more than two dimensions is orthogonalized as the matrix
    ``(g.size(0), -1)`` and returned in its shape. ``rows``: the row counts of
    blocks orthogonalized separately (:func:`block_rows`), None for the whole.
    """
    if g.ndim < 2:
        raise ValueError(f"Newton–Schulz orthogonalization needs a matrix, got shape {tuple(g.shape)}")
    return newton_schulz_bf16_(g.to(torch.bfloat16, copy=True), coefficients, steps, eps, rows)


def newton_schulz_bf16_(
    x: Tensor, coefficients: Any, steps: int, eps: float, rows: Sequence[int] | None = None
) -> Tensor:
    """:func:`newton_schulz` of a bfloat16 tensor that may be overwritten.

    The fused step (``fused/cpu_kernels.muon``) makes the bfloat16 copy in its
    momentum pass and calls this. A tall 2-D result is a transposed view; an
    N-D or split result has the shape of ``x``.
    """
    schedule = ns_schedule(coefficients, steps)
    if x.ndim == 2 and rows is None:
        return _newton_schulz_matrix_(x, schedule, eps)
    matrix = x.reshape(x.size(0), -1)  # a view of x when x is contiguous (a fresh copy is)
    if rows is None:
        out = _newton_schulz_matrix_(matrix, schedule, eps)
    else:
        out = torch.cat([_newton_schulz_matrix_(block, schedule, eps) for block in matrix.split(list(rows))])
    return out.reshape(x.shape)


def _newton_schulz_matrix_(x: Tensor, schedule: Sequence[Sequence[float]], eps: float) -> Tensor:
    """The iteration on a 2-D bfloat16 matrix ``x``, which it may overwrite."""
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for a, b, c in schedule:
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x


class OrthogonalizeViaNewtonSchulz(Transform):
    """``u ← NS(u)``: the (approximate) orthogonalization ``UVᵀ`` of a matrix update.

    See :func:`newton_schulz` for the iteration (``ns_coefficients`` (a, b, c),
    a schedule or a preset name; ``ns_steps``; ``eps``). It is computed in
    bfloat16, as torch.optim.Muon and Keller Jordan's Muon do, and returned in
    the update's dtype (exactly: the bfloat16 values are representable).

    * A 2-D update is orthogonalized as torch.optim.Muon does (bitwise).
    * An update of more than two dimensions (a convolution kernel) is
      orthogonalized as the matrix ``(out, −1)`` and reshaped back, as Keller
      Jordan's Muon does with conv filters. (``optim.create("muon", ...)``
      sends such tensors here only with ``nd="flatten"``.)
    * ``split`` (None, an integer k, or a list of row counts): the rows are cut
      into blocks (:func:`block_rows`), each orthogonalized as a matrix of its
      own, e.g. ``split=3`` for a fused QKV weight ``(3d, d)``. ValueError at
      the step (and at ``optim.create``) when they do not add up to the rows.

    On a shard of a DTensor parameter (FSDP2) the whole tensor is gathered (in
    bfloat16), flattened, split, orthogonalized and reshaped on every process,
    which keeps its own rows (so blocks are rows of the whole matrix, not of
    the shard). Reference: torch.optim.Muon. No state.

    The multi-tensor path runs the iteration tensor by tensor too (torch has
    no multi-tensor matmul); batching equal shapes with ``bmm`` would not be
    bitwise equal to the reference.
    """

    hypers = {
        "ns_coefficients": Hyper(NS_COEFFICIENTS, _coefficients),
        "ns_steps": Hyper(5, _ns_steps),
        "eps": Hyper(1e-7, positive),
        "split": Hyper(None, split_option),
    }

    def _rows(self, group: Mapping[str, Any], shape: Sequence[int]) -> list[int] | None:
        """The block row counts for a weight of (global) ``shape``; None: the whole."""
        if "split" not in self.keys:
            return None
        return block_rows(self.hp(group, "split"), shape, self.keys["split"])

    def _orthogonalize(self, u: Tensor, group: Mapping[str, Any]) -> Tensor:
        if u.ndim < 2:
            raise ValueError(
                f"{type(self).__name__} orthogonalizes matrices (or N-D tensors as matrices), "
                f"got an update of shape {tuple(u.shape)}"
            )
        o = newton_schulz(
            u,
            self.hp(group, "ns_coefficients"),
            self.hp(group, "ns_steps"),
            self.hp(group, "eps"),
            self._rows(group, u.shape),
        )
        return o.to(u.dtype)

    def update_tensor(self, u, p, state, group):
        if sharded.sharding(state) is None:
            return self._orthogonalize(u, group)
        # A shard of the tensor: every process orthogonalizes the whole tensor
        # (gathered in bfloat16, the iteration's dtype) and keeps its own rows.
        o = self._orthogonalize(sharded.full(u.to(torch.bfloat16), state), group)
        return sharded.shard(o, state).to(u.dtype)

    def update_foreach(self, updates, params, states, group):
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]


def adjusted_lr_ratio(adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """The factor torch.optim.Muon multiplies ``lr`` by for a weight of ``shape`` (A, B, ...).

    With ``A = shape[0]`` and ``B`` the product of the other dimensions (the
    columns of the flattened matrix, ``in·kh·kw`` for a conv kernel; torch's
    Muon sees 2-D weights only, where ``B = shape[1]``):

    * ``None`` or ``"original"`` (Keller Jordan): ``√max(1, A/B)``;
    * ``"match_rms_adamw"`` (Liu et al., "Muon is Scalable for LLM Training",
      2025, Moonlight): ``0.2·√max(A, B)``, which gives the update the RMS of an
      AdamW update so AdamW's lr and weight decay can be reused.

    For a tensor with fewer than two dimensions the factor is 1.
    """
    if len(shape) < 2:
        return 1.0
    rows, cols = shape[0], math.prod(shape[1:])
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


class ScaleByAdjustedLr(Transform):
    """``u ← −lr·r(shape)·u``: Muon's learning rate, adjusted to the weight's shape.

    ``r`` is :func:`adjusted_lr_ratio` (``adjust_lr_fn`` None / "original" /
    "match_rms_adamw") of the weight's global shape, flattened to a matrix.
    With ``split`` (see :class:`OrthogonalizeViaNewtonSchulz`) each block of
    rows gets the factor of its own shape, as a separate weight would.
    Decoupled weight decay uses the unadjusted lr, as in torch.optim.Muon.
    Reference: torch.optim.Muon.
    """

    hypers = {
        "lr": Hyper(1e-3, learning_rate),
        "adjust_lr_fn": Hyper(None, one_of(None, "original", "match_rms_adamw")),
        "split": Hyper(None, split_option),
    }

    def _step(self, p: Tensor, group: Mapping[str, Any], state: Mapping[str, Any]) -> float | Tensor:
        """``−lr·r``, with ``r`` from the parameter's global shape (``p`` may be a local shard).

        A float, or with a split into blocks of unequal rows a tensor of one
        factor per row (broadcasting over the update, of its rows on a shard).
        """
        lr, fn = self.hp(group, "lr"), self.hp(group, "adjust_lr_fn")
        shape = sharded.shape(p, state)
        rows = block_rows(self.hp(group, "split"), shape, self.keys["split"]) if "split" in self.keys else None
        if rows is None or len(set(rows)) == 1:
            block = shape if rows is None else (rows[0], *shape[1:])
            return -(lr * adjusted_lr_ratio(fn, block))
        dtype = torch.promote_types(p.dtype, torch.float32)
        factors = torch.cat(
            [torch.full((n,), -(lr * adjusted_lr_ratio(fn, (n, *shape[1:]))), dtype=dtype) for n in rows]
        )
        factors = factors.to(p.device).reshape(-1, *[1] * (len(shape) - 1)).expand(shape)
        return sharded.shard(factors, state)

    def update_tensor(self, u, p, state, group):
        return u.mul(self._step(p, group, state))

    def update_foreach(self, updates, params, states, group):
        steps = [self._step(p, group, s) for p, s in zip(params, states)]
        if all(isinstance(s, float) for s in steps):
            return torch._foreach_mul(updates, steps)
        return [u.mul(s) for u, s in zip(updates, steps)]


ema_momentum = EmaMomentum
orthogonalize_via_newton_schulz = OrthogonalizeViaNewtonSchulz
scale_by_adjusted_lr = ScaleByAdjustedLr
