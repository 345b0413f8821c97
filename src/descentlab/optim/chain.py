"""`ChainOptimizer`: a list of transforms wrapped as a ``torch.optim.Optimizer``.

One step, for each param group::

    u = grad                       (negated when group["maximize"])
    for t in transforms: u = t(u)  (the last one scales by -lr)
    p += u

Because it is a real ``torch.optim.Optimizer`` with hyperparameters in its param
groups and tensors in ``state``, it works with ``torch.optim.lr_scheduler``,
``torch.amp.GradScaler``, ``state_dict()``/``load_state_dict()``, Lightning and
the Hugging Face Trainer. DTensor parameters (FSDP2's ``fully_shard``) are
stepped on their local shards, with the collectives a rule needs
(``optim/sharded.py``, docs/sharding.md).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import lowprec, sharded
from .fused import low_precision_step
from .base import Transform, boolean

def _undecorated(name: str) -> Callable[..., Any]:
    """``torch.optim.Optimizer``'s method ``name`` without its ``torch._disable_dynamo``
    wrapper while ``torch._dynamo`` is not loaded, and with it once it is.

    The wrapper imports ``torch._dynamo`` at its first call: about a second of every
    process that makes an optimizer (it pulls in sympy and FSDP), ~40% of a short
    ``descentlab train``'s start (BENCHMARKS.md, "Fixed costs"). Before that import
    nothing can be compiling, so the wrapper has nothing to disable; after it (a user's
    ``torch.compile``), torch's method runs as it is.
    """
    wrapped = getattr(torch.optim.Optimizer, name)
    plain = getattr(wrapped, "__wrapped__", wrapped)

    @functools.wraps(plain)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return (wrapped if "torch._dynamo" in sys.modules else plain)(self, *args, **kwargs)

    return call


_add_param_group = _undecorated("add_param_group")
_load_state_dict = _undecorated("load_state_dict")


#: Keys every param group has, whatever the chain.
GROUP_KEYS = {"foreach": None, "maximize": False, "fused": None, "state_dtype": None}


def _fused_option(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "None, True or False"


def walk(transforms: Iterable[Transform]) -> Iterable[Transform]:
    """Every transform of a chain, nested ones included."""
    for t in transforms:
        yield t
        yield from walk(t.children())


def merged_defaults(transforms: Sequence[Transform]) -> dict[str, Any]:
    """The union of the transforms' hyperparameter defaults.

    Two transforms may read the same key (they then share the value) only if
    their defaults agree; otherwise one of them must be given other ``keys``.
    """
    merged: dict[str, Any] = {}
    owner: dict[str, Transform] = {}
    for t in walk(transforms):
        for key, value in t.defaults.items():
            if key in merged and merged[key] != value:
                raise ValueError(
                    f"hyperparameter {key!r} is read by {owner[key]!r} and {t!r} with different "
                    f"values ({merged[key]!r} and {value!r}); give one of them keys={{...}}"
                )
            merged.setdefault(key, value)
            owner.setdefault(key, t)
    return merged


def _check_state_keys(transforms: Sequence[Transform]) -> None:
    seen: dict[str, Transform] = {}
    for t in walk(transforms):
        for key in t.state_keys:
            if key in seen and seen[key] is not t and type(seen[key]) is type(t):
                # The same kind of transform twice would share its state.
                raise ValueError(f"{seen[key]!r} and {t!r} would share the state {key!r}")
            seen.setdefault(key, t)


class ChainOptimizer(torch.optim.Optimizer):
    """An optimizer made of gradient transforms.

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of
            param-group dicts, as for any ``torch.optim.Optimizer``.
        transforms: the chain, applied in order; the last one must produce the
            step to add to the parameters (see :func:`descentlab.optim.chain`,
            which appends ``scale_by_lr``).
        defaults: hyperparameter values overriding the transforms' defaults.
        name: a label shown in ``repr`` (the registry name for named optimizers).
        fused_step: optional one-pass kernel ``fused_step(params, grads, states,
            group) -> bool`` tried before the chain unless the group's ``fused``
            is False; it returns False to decline. Must equal the chain. If it
            has ``why_not(group) -> str | None``, a group with ``fused=True``
            that it cannot serve is refused when added (see ``optim/fused``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        transforms: Sequence[Transform],
        defaults: dict[str, Any] | None = None,
        *,
        name: str = "chain",
        fused_step: Callable[..., bool] | None = None,
    ):
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of tensors or of param-group dicts, got a single "
                f"Tensor of shape {tuple(params.shape)}; pass [tensor] or model.parameters()"
            )
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"expected Transform objects in the chain, got {t!r}")
        self.transforms = list(transforms)
        self.name = name
        self._fused_step = fused_step
        _check_state_keys(self.transforms)
        full = {**GROUP_KEYS, **merged_defaults(self.transforms)}
        unknown = set(defaults or {}) - set(full)
        if unknown:
            raise TypeError(
                f"unknown hyperparameter(s) {sorted(unknown)} for {name}; it takes {sorted(full)}"
            )
        full.update(defaults or {})
        super().__init__(params, full)

    state_dict = _undecorated("state_dict")
    zero_grad = _undecorated("zero_grad")

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}[{self.name}]({inner})"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if len({id(p) for p in tensors}) != len(tensors):
            raise ValueError("the same parameter appears twice in a param group; pass each tensor once")
        _add_param_group(self, {**param_group, "params": params})
        group = self.param_groups[-1]
        for key, check in (("maximize", boolean), ("fused", _fused_option), ("state_dtype", lowprec.check)):
            message = check(group[key])
            if message:
                raise ValueError(f"invalid {key}={group[key]!r}: expected {message}")
        for t in walk(self.transforms):
            t.validate(group)
        if group["fused"] is True:
            why_not = getattr(self._fused_step, "why_not", None)
            reason = "has no fused kernel" if self._fused_step is None else why_not and why_not(group)
            if reason:
                raise ValueError(f"fused=True: {self.name} {reason}")

    # -- the step -------------------------------------------------------------

    def _init_state(self, p: Tensor, state: dict, group: dict[str, Any]) -> None:
        state["step"] = 0
        for t in self.transforms:  # combinators initialize their children
            t.init_state(p, state, group)

    @staticmethod
    def _use_foreach(group: dict[str, Any], params: list[Tensor]) -> bool:
        if group["foreach"] is not None:
            return bool(group["foreach"])
        # torch's own default: the multi-tensor path on GPUs, the for-loop on CPU,
        # where it measures faster (see ../shared/anchors/MEASURED.md).
        return all(p.is_cuda for p in params)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError(f"{self.name} does not support sparse gradients")
            states = []
            low = group.get("state_dtype") == "bfloat16"
            for p in params:
                state = self.state[p]
                if not state:
                    self._init_state(p, state, group)
                    if low:
                        lowprec.compress_(p, state)
                state["step"] += 1
                states.append(state)
            positions = [self._positions[p] for p in params] if low else None
            if sharded.is_sharded(params):
                # DTensor parameters (FSDP2): the step runs on the local shards.
                local_params, grads, views = sharded.localize(params, grads, states)
                self._step_low(local_params, grads, views, group, positions)
                for view, state in zip(views, states):
                    if isinstance(view, sharded.LocalState):
                        view.store(state)
            else:
                self._step_low(params, grads, states, group, positions)
        return loss

    @property
    def rotated_state_keys(self) -> frozenset[str]:
        """State keys of the parameter's shape whose entries are not the parameter's
        coordinates (SOAP's moments in the eigenbasis: transforms list them in a class
        attribute ``rotated_state``). Pruning masks leave them alone (compress/masks.py):
        a pruned weight's zero does not make any one rotated coordinate zero."""

        def walk(ts):
            for t in ts:
                yield from getattr(t, "rotated_state", ())
                for branch in getattr(t, "branches", {}).values():
                    yield from walk(branch)
                yield from walk(getattr(t, "inner", ()))

        return frozenset(walk(self.transforms))

    @property
    def _positions(self) -> dict[Tensor, int]:
        """Each parameter's position in the optimizer (seeds lowprec's rounding)."""
        return {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch casts every state tensor but "step" to a floating parameter's dtype:
        # integer state (kron's generator states, uint8) goes back to its own dtype,
        # bfloat16 state back to bfloat16 (exactly: the values came from it).
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        integer = {
            (position, key): value.dtype
            for position, i in enumerate(saved_ids)
            for key, value in state_dict["state"].get(i, {}).items()
            if isinstance(value, Tensor) and not (value.is_floating_point() or value.is_complex())
        }
        _load_state_dict(self, state_dict)
        if integer:
            params = [p for g in self.param_groups for p in g["params"]]
            for (position, key), dtype in integer.items():
                state = self.state[params[position]]
                state[key] = state[key].to(dtype)
        for group in self.param_groups:
            if group.get("state_dtype") == "bfloat16":
                for p in group["params"]:
                    if self.state[p]:
                        lowprec.compress_(p, self.state[p])

    def _step_low(self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict,
                  positions: list[int] | None) -> None:
        """The step; with ``positions`` (``state_dtype="bfloat16"``) on float copies of the
        bfloat16 state, written back stochastically rounded (``lowprec.py``)."""
        if positions is None:
            self._step_group(params, grads, states, group)
            return
        low_grads = torch._foreach_neg(grads) if group["maximize"] else grads
        if low_precision_step(self._fused_step, params, low_grads, states, group,
                                    lambda: lowprec.key_seeds(params, states, positions)):
            return  # one pass on the bfloat16 state (fused/cpu_kernels.py: adamw_bf16)
        works = lowprec.widen(params, states)
        self._step_group(params, grads, works, group)
        lowprec.narrow_(params, states, works, positions, kernel=group.get("fused") is not False)

    def _step_group(self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> None:
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        fused = self._fused_step is not None and group.get("fused") is not False
        if fused and self._fused_step(params, grads, states, group):
            return
        foreach = self._use_foreach(group, params)
        updates = grads
        for t in self.transforms:
            updates = t.update(updates, params, states, group, foreach)
        if foreach:
            torch._foreach_add_(params, updates)
        else:
            for p, u in zip(params, updates):
                p.add_(u)

    # -- schedule-free style modes ------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if self.state[p]]
            states = [self.state[p] for p in params]
            if not params:
                continue
            local_params, _, views = sharded.localize(params, None, states)
            low = group.get("state_dtype") == "bfloat16"
            works = lowprec.widen(local_params, views) if low else views
            for t in self.transforms:
                t.on_mode(mode, local_params, works, group)
            if low:  # unchanged values round to themselves
                lowprec.narrow_(local_params, views, works, [self._positions[p] for p in params],
                                kernel=group.get("fused") is not False)
            for view, state in zip(views, states):
                if isinstance(view, sharded.LocalState):
                    view.store(state)

    def train(self) -> None:
        """Switch to training mode (matters only for schedule-free optimizers)."""
        self._set_mode("train")

    def eval(self) -> None:
        """Switch to evaluation mode (matters only for schedule-free optimizers)."""
        self._set_mode("eval")
