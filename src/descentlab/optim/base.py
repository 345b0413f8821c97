"""The building block of every optimizer: a gradient transformation.

A :class:`Transform` maps a list of *updates* (at first the gradients) to a new
list of updates, one parameter group at a time. An optimizer is a chain of
transforms whose last member turns the update into the step that is added to the
parameters (``p += u``), as in optax (``optax/_src/base.py``), but done the
PyTorch way:

* hyperparameters live in the param group (``group["lr"]``, ``group["betas"]``),
  so param groups, ``torch.optim.lr_scheduler`` and ``state_dict()`` work as
  they do with ``torch.optim``;
* state lives in the optimizer's per-parameter ``state[p]`` dict, under keys
  named like torch's (``exp_avg``, ``momentum_buffer``), so it can be compared
  with the reference's state.

Each transform has two paths that must agree: ``update_tensor`` (the readable
for-loop, the ground truth) and ``update_foreach`` (the multi-tensor path built
on ``torch._foreach_*`` ops).

Contract for implementers: the ``updates`` a transform receives may be the
gradient tensors themselves, so a transform never writes into its input in
place; it may write in place into tensors it created itself, and into its own
state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter a transform reads from the param group.

    ``check(value)`` returns None when the value is valid, else the text that
    follows "expected" in the error message.
    """

    default: Any
    check: Check | None = None


# Checks shared by many transforms; each returns None or what was expected.


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def nonnegative(value: Any) -> str | None:
    if not _is_real(value) or not value >= 0 or math.isinf(value):
        return "a finite number >= 0"
    return None


def learning_rate(value: Any) -> str | None:
    """A finite number >= 0, or a 0-dim floating-point tensor holding one.

    torch.optim takes a tensor lr; a scheduler then changes it in place
    (``LRScheduler`` does ``group["lr"].fill_(...)``), so the value is read at
    every step (:meth:`Transform.hp` reads it as a float). A tensor that
    requires grad is refused: the step is not differentiable, and its gradient
    would be dropped silently.
    """
    if isinstance(value, Tensor):
        if value.ndim != 0:
            return f"a number or a 0-dim tensor, got a tensor of shape {tuple(value.shape)}"
        if not value.is_floating_point():
            return f"a floating-point tensor, got dtype {value.dtype}"
        if value.requires_grad:
            return "a tensor that does not require grad (the optimizer step is not differentiable)"
        value = value.item()
    return nonnegative(value)


def positive(value: Any) -> str | None:
    if not _is_real(value) or not value > 0 or math.isinf(value):
        return "a finite number > 0"
    return None


def unit_interval(value: Any) -> str | None:
    """0 <= value < 1: a decay rate such as a beta or a momentum coefficient."""
    if not _is_real(value) or not 0 <= value < 1:
        return "a number in [0, 1)"
    return None


def betas_pair(value: Any) -> str | None:
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or any(unit_interval(b) for b in value)
    ):
        return "a pair (beta1, beta2) with each beta in [0, 1)"
    return None


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def positive_int(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return "an integer >= 1"
    return None


def finite_number(value: Any) -> str | None:
    if not _is_real(value) or not math.isfinite(value):
        return "a finite number"
    return None


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"one of {', '.join(map(repr, choices))}"

    return check


class Transform:
    """Base class of gradient transformations.

    Subclasses declare ``hypers`` (role name -> :class:`Hyper`) and
    ``state_keys`` (the per-parameter state they own), and implement
    ``update_tensor`` and ``update_foreach``; a transform that needs the whole
    group at once (a global norm, a group-wide estimate) overrides ``update``.

    Constructor keywords set the defaults of the hyperparameters; ``keys`` maps
    a role to another param-group key, so that two transforms of one chain can
    read different values (e.g. ``add_l2(keys={"weight_decay": "l2"})``).
    """

    hypers: ClassVar[Mapping[str, Hyper]] = {}
    state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, keys: Mapping[str, str] | None = None, **defaults: Any):
        keys = dict(keys or {})
        unknown = (set(defaults) | set(keys)) - set(self.hypers)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown hyperparameter(s) {sorted(unknown)}; "
                f"it takes {sorted(self.hypers)}"
            )
        self.keys = {role: keys.get(role, role) for role in self.hypers}
        self.defaults = {
            self.keys[role]: defaults.get(role, h.default) for role, h in self.hypers.items()
        }
        for key, value in self.defaults.items():
            self._check(key, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({args})"

    def hp(self, group: Mapping[str, Any], role: str) -> Any:
        """The value of hyperparameter ``role`` for this group.

        A 0-dim tensor (a tensor ``lr``, which schedulers update in place) is
        read as a Python float, so the arithmetic is the float-lr run's.
        """
        value = group[self.keys[role]]
        return value.item() if isinstance(value, Tensor) else value

    def _check(self, key: str, value: Any) -> None:
        role = next(r for r, k in self.keys.items() if k == key)
        check = self.hypers[role].check
        message = check(value) if check is not None else None
        if message is not None:
            raise ValueError(f"invalid {key}={value!r}: expected {message}")

    def validate(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first invalid hyperparameter of ``group``."""
        for key in self.keys.values():
            self._check(key, group[key])
        self.validate_group(group)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        """Checks that involve several hyperparameters (override)."""

    def init_state(self, p: Tensor, state: dict, group: Mapping[str, Any]) -> None:
        """Create this transform's state for parameter ``p`` (override).

        The default initializes the children, so a combinator that does not
        override it gives every child state for every parameter.
        """
        for child in self.children():
            child.init_state(p, state, group)

    def update(
        self,
        updates: list[Tensor],
        params: list[Tensor],
        states: list[dict],
        group: Mapping[str, Any],
        foreach: bool,
    ) -> list[Tensor]:
        if foreach:
            return self.update_foreach(updates, params, states, group)
        return [self.update_tensor(u, p, s, group) for u, p, s in zip(updates, params, states)]

    def update_tensor(self, u: Tensor, p: Tensor, state: dict, group: Mapping[str, Any]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no per-tensor update")

    def update_foreach(
        self, updates: list[Tensor], params: list[Tensor], states: list[dict], group: Mapping[str, Any]
    ) -> list[Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no multi-tensor update")

    def children(self) -> Sequence[Transform]:
        """Transforms nested inside this one (for combinators)."""
        return ()

    def on_mode(self, mode: str, params: list[Tensor], states: list[dict], group: Mapping[str, Any]) -> None:
        """Called by ``optimizer.train()`` / ``optimizer.eval()`` (schedule-free)."""
        for child in self.children():
            child.on_mode(mode, params, states, group)
