"""DiLoCo: data parallelism that communicates once every ``sync_every`` steps.

Douillard et al. 2023, "DiLoCo: Distributed Low-Communication Training of
Language Models" (arXiv:2311.08105), Algorithm 1. Every process trains its
own copy of the model on its own data shard with an *inner* optimizer (the
paper: AdamW) and no gradient all-reduce. Every H = ``sync_every`` inner steps
the processes agree on one model again through an *outer* optimizer step
(the paper: SGD with Nesterov momentum, lr 0.7, momentum 0.9, H = 500).

One outer step, with p processes, θ the global (shared) parameters, θᵢ process
i's parameters after its H inner steps, η = ``outer_lr`` and μ = ``outer_momentum``::

    Δ = θ − (1/p) Σᵢ θᵢ          the outer gradient (one all-reduce of the parameters)
    b ← μ·b + Δ                  the outer momentum buffer (zero at the start)
    θ ← θ − η·(Δ + μ·b)          Nesterov; without it θ ← θ − η·b
    θᵢ ← θ                       on every process

This is ``torch.optim.SGD(nesterov=True)``'s rule applied to Δ. Special cases:
η = 1, μ = 0 is local SGD (Stich 2019, "Local SGD Converges Fast and
Communicates Little"): the processes' parameters are averaged. In one process
(p = 1) Δ = θ − θ₁ and the rule is an outer optimizer over the inner one's
progress; with μ = 0 it is Lookahead (Zhang et al. 2019) with α = η.

The model is not wrapped in ``DistributedDataParallel`` (``averages_parameters``
tells the Trainer so); the only collectives are one broadcast of the parameters
at construction and one all-reduce per outer step (one of each per parameter dtype and device).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def _check(sync_every: Any, outer_lr: Any, outer_momentum: Any, nesterov: Any) -> None:
    if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
        raise ValueError(f"invalid sync_every={sync_every!r}: expected an integer >= 1")
    if isinstance(outer_lr, bool) or not isinstance(outer_lr, (int, float)) or not (0 < outer_lr < math.inf):
        raise ValueError(f"invalid outer_lr={outer_lr!r}: expected a finite number > 0")
    if isinstance(outer_momentum, bool) or not isinstance(outer_momentum, (int, float)) or not (
        0 <= outer_momentum < 1
    ):
        raise ValueError(f"invalid outer_momentum={outer_momentum!r}: expected a number in [0, 1)")
    if not isinstance(nesterov, bool):
        raise TypeError(f"invalid nesterov={nesterov!r}: expected True or False")


def _buckets(tensors: list[Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype): one flat buffer, so one collective, per group."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return list(groups.values())


class DiLoCo(torch.optim.Optimizer):
    """An inner optimizer plus DiLoCo's outer Nesterov step every ``sync_every`` steps.

    Args:
        inner: any ``torch.optim.Optimizer`` over this process's parameters
            (e.g. ``descentlab.optim.create("adamw", model.parameters())``).
            Its param groups *are* this optimizer's ``param_groups``, so an lr
            scheduler given the DiLoCo object schedules the inner lr.
        sync_every: H, the inner steps between two outer steps (integer >= 1).
        outer_lr: η > 0.
        outer_momentum: μ in [0, 1).
        nesterov: Nesterov momentum (the paper's choice) or heavy ball.
        process_group: the processes that average (None: the default group).
            Without an initialized group, or with one process, nothing is
            communicated and the outer step runs on this process alone.

    Construction broadcasts the parameters from the group's first rank, so
    every process starts from the same θ, and keeps θ as a copy. Memory: two
    extra copies of the parameters (θ and the momentum buffer b).

    ``state_dict()`` holds the inner optimizer's state, θ, b and the step
    counts (tensors, lists and ints: ``torch.load(weights_only=True)`` reads
    it). Between two outer steps each process's parameters and inner state are
    its own, so an exact resume mid-period needs each process's model and
    optimizer state; at a period boundary only the inner state differs.
    """

    #: The Trainer tests this: the optimizer synchronizes the parameters itself, so
    #: the model must not be wrapped in DistributedDataParallel (whose gradient
    #: all-reduce would make every step communicate).
    averages_parameters = True

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        *,
        sync_every: int = 20,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        nesterov: bool = True,
        process_group: Any = None,
    ):
        if not isinstance(inner, torch.optim.Optimizer):
            raise TypeError(f"DiLoCo wraps a torch.optim.Optimizer, got {type(inner).__name__}")
        if isinstance(inner, DiLoCo):
            raise TypeError("DiLoCo wraps an inner optimizer, not another DiLoCo")
        _check(sync_every, outer_lr, outer_momentum, nesterov)
        self.sync_every, self.outer_lr = sync_every, float(outer_lr)
        self.outer_momentum, self.nesterov = float(outer_momentum), nesterov
        self.process_group = process_group
        params = [p for group in inner.param_groups for p in group["params"]]
        # torch.optim.Optimizer's constructor sets up the hooks and the step
        # profiling, with groups of its own that are dropped right after: from
        # then on `param_groups` and `state` are the inner optimizer's.
        super().__init__(params, {})
        del self.__dict__["_own_param_groups"], self.__dict__["_own_state"]
        self.inner = inner
        self.defaults = inner.defaults
        self._params = params
        self._buckets = _buckets(params)
        self.steps = 0  # inner steps in all
        self.steps_since_sync = 0
        with torch.no_grad():
            if self.world_size > 1:
                src = 0 if process_group is None else dist.get_global_rank(process_group, 0)
                for bucket in self._buckets:
                    tensors = [params[i] for i in bucket]
                    flat = _flatten_dense_tensors(tensors)
                    dist.broadcast(flat, src=src, group=process_group)
                    for p, value in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
                        p.copy_(value)
            self.global_params = [p.detach().clone() for p in params]
            self.momentum = [torch.zeros_like(p) for p in self.global_params]

    # The inner optimizer's, looked up each time: its load_state_dict() replaces
    # both objects, and an lr scheduler holding this optimizer must see the new ones.
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        inner = self.__dict__.get("inner")
        return inner.param_groups if inner is not None else self.__dict__["_own_param_groups"]

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        inner = self.__dict__.get("inner")
        if inner is None:
            self.__dict__["_own_param_groups"] = value
        else:
            inner.param_groups = value

    @property
    def state(self) -> Any:
        inner = self.__dict__.get("inner")
        return inner.state if inner is not None else self.__dict__["_own_state"]

    @state.setter
    def state(self, value: Any) -> None:
        inner = self.__dict__.get("inner")
        if inner is None:
            self.__dict__["_own_state"] = value
        else:
            inner.state = value

    def __getattr__(self, name: str) -> Any:
        # Attributes DiLoCo lacks are the inner optimizer's (a named optimizer's
        # `name`, `transforms`, ...), so code that inspects the optimizer sees it.
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def __repr__(self) -> str:
        return (
            f"DiLoCo({self.inner!r}, sync_every={self.sync_every}, outer_lr={self.outer_lr}, "
            f"outer_momentum={self.outer_momentum}, nesterov={self.nesterov})"
        )

    @property
    def world_size(self) -> int:
        """The number of processes that average (1 without an initialized group)."""
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "_params" in self.__dict__:  # torch.optim.Optimizer's constructor adds the groups first
            raise RuntimeError("DiLoCo's parameters are fixed at construction: add the group to the inner "
                               "optimizer before wrapping it")
        super().add_param_group(param_group)

    # -- the steps ----------------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One inner step; every ``sync_every``-th one is followed by the outer step."""
        loss = self.inner.step(closure) if closure is not None else self.inner.step()
        self.steps += 1
        self.steps_since_sync += 1
        if self.steps_since_sync >= self.sync_every:
            self._outer_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def sync(self) -> bool:
        """End the current period now: the outer step, if there were inner steps since the last one.

        Call it (on every process: it is a collective) where all processes must
        hold the same model with fewer than ``sync_every`` steps since the last
        outer step: at the end of training, before the final evaluation and
        checkpoint, when the step budget is not a multiple of ``sync_every``.
        Returns whether it communicated.
        """
        if self.steps_since_sync == 0:
            return False
        self._outer_step()
        return True

    @torch.no_grad()
    def _outer_step(self) -> None:
        world = self.world_size
        for bucket in self._buckets:
            local = [self._params[i] for i in bucket]
            theta = [self.global_params[i] for i in bucket]
            buf = [self.momentum[i] for i in bucket]
            flat = _flatten_dense_tensors(local)
            if world > 1:
                dist.all_reduce(flat, group=self.process_group)  # sum; gloo has no ReduceOp.AVG
                flat.div_(world)
            mean = _unflatten_dense_tensors(flat, local)
            delta = torch._foreach_sub(theta, mean)  # Δ = θ − mean θᵢ
            torch._foreach_mul_(buf, self.outer_momentum)
            torch._foreach_add_(buf, delta)  # b ← μ·b + Δ
            if self.nesterov:
                torch._foreach_add_(delta, buf, alpha=self.outer_momentum)  # Δ + μ·b
                torch._foreach_add_(theta, delta, alpha=-self.outer_lr)
            else:
                torch._foreach_add_(theta, buf, alpha=-self.outer_lr)
            for p, t in zip(local, theta):
                p.copy_(t)
        self.steps_since_sync = 0

    @contextlib.contextmanager
    def averaged(self):
        """The parameters set to θ, the model the processes agree on (the last
        outer step's), inside the block; this process's own back afterwards.

        The Trainer evaluates (and keeps "best" weights) inside it, so that every
        process evaluates the same model and early stopping, plateau schedules
        and the best checkpoint decide the same everywhere between synchronisations."""
        if self.steps_since_sync == 0:  # just synchronised: the parameters are θ
            yield
            return
        with torch.no_grad():
            own = [p.detach().clone() for p in self._params]
            for p, t in zip(self._params, self.global_params):
                p.copy_(t)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, o in zip(self._params, own):
                    p.copy_(o)

    # -- schedule-free inner optimizers ---------------------------------------------

    def train(self) -> None:
        """The inner optimizer's training mode, where it has one (schedule-free optimizers)."""
        fn = getattr(self.inner, "train", None)
        if callable(fn):
            fn()

    def eval(self) -> None:
        """The inner optimizer's evaluation mode, where it has one."""
        fn = getattr(self.inner, "eval", None)
        if callable(fn):
            fn()

    # -- checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state, θ, the outer momentum and the step counts."""
        return {
            "inner": self.inner.state_dict(),
            "global_params": [t.clone() for t in self.global_params],
            "momentum": [b.clone() for b in self.momentum],
            "steps": self.steps,
            "steps_since_sync": self.steps_since_sync,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = {"inner", "global_params", "momentum", "steps", "steps_since_sync"} - set(state_dict)
        if missing:
            raise ValueError(f"not a DiLoCo state dict: it lacks {sorted(missing)}")
        for key in ("global_params", "momentum"):
            saved = state_dict[key]
            if len(saved) != len(self._params) or any(s.shape != p.shape for s, p in zip(saved, self._params)):
                shapes = [tuple(s.shape) for s in saved]
                raise ValueError(f"DiLoCo state dict {key!r} has shapes {shapes}, the parameters "
                                 f"{[tuple(p.shape) for p in self._params]}")
        self.inner.load_state_dict(state_dict["inner"])
        with torch.no_grad():
            for mine, saved in zip(self.global_params, state_dict["global_params"]):
                mine.copy_(saved)
            for mine, saved in zip(self.momentum, state_dict["momentum"]):
                mine.copy_(saved)
        self.steps = int(state_dict["steps"])
        self.steps_since_sync = int(state_dict["steps_since_sync"])
