"""Any optimizer, not only the registered ones: a reference, a class, a factory.

Wherever descentlab takes an optimizer name it also takes

* ``package.module:Name`` (``torch.optim:AdamW``, ``pytorch_optimizer:ADOPT``) or
  ``path/to/file.py:Name``, imported with the rules of :mod:`descentlab.imports`
  (the same as ``--workload``);
* a name that an installed package adds through the entry-point group
  ``descentlab.optimizers`` (a registered name wins);
* in Python, the class or callable itself.

``Name`` is a ``torch.optim.Optimizer`` subclass, or a factory
``f(params, **hparams)`` that returns one. Its hyperparameters go to the
constructor, checked against its signature first (an unknown keyword names the
keywords it accepts; a constructor that raises is retried without each keyword
to name the one it rejected).

descentlab's own extras on such an optimizer (decided here, docs/your-own-optimizer.md):

* ``weight_decay`` is the class's own: it goes to the constructor when the class takes it;
* ``l1``, ``l2`` (coupled) and ``decoupled_decay`` work on any optimizer: a step
  pre-hook adds ``l1·sign(p) + l2·p`` to each gradient and multiplies ``p`` by
  ``1 − lr·decoupled_decay`` before the class's own step, reading the values
  from the param groups (so ``exclude_from_decay`` zeroes them per group, as for
  the named optimizers);
* ``exclude_from_decay`` and param-group rules build the groups before the
  constructor sees them;
* clipping is the Trainer's (``clip_norm``), before the step, for every optimizer.

A Python object that cannot be imported again by name (defined in ``__main__``,
a local class, a lambda) is held in this process under ``python:QualName``: it
runs here (``jobs=1``), and another process that is handed that name is told to
pass a reference instead.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .. import imports
from ..errors import UsageError
from . import registry
from .params import as_groups, split_decay

ENTRY_POINT_GROUP = "descentlab.optimizers"
EXPECTED = "a torch.optim.Optimizer subclass or a factory f(params, **hparams) that returns one"
#: descentlab's regularization, applied to any optimizer by a step pre-hook
EXTRAS = ("l1", "l2", "decoupled_decay")


@dataclass(frozen=True, eq=False)
class ForeignOptimizer:
    """An optimizer class or factory that is not in descentlab's registry.

    Attributes:
        name: its canonical reference (what configurations, the run store and
            other processes keep): ``module:Name``, ``/abs/file.py:Name``, an
            entry-point name, or ``python:QualName`` for an in-process object.
        target: the class or factory.
        kind: ``"class"`` or ``"factory"``.
        summary: the first line of its docstring.
    """

    name: str
    target: Callable[..., torch.optim.Optimizer]
    kind: str
    summary: str = ""
    plugin: dict[str, Any] | None = None  # an entry point's provenance

    registered = False

    @property
    def label(self) -> str:
        """A short name for messages: ``file.py:Name`` for a file, else the reference."""
        return imports.short(self.name)

    def signature(self) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
        """``(accepted keywords or None for **kwargs, {keyword: default})`` after ``params``."""
        try:
            sig = inspect.signature(self.target)
        except (TypeError, ValueError):
            return None, {}
        params = list(sig.parameters.values())
        if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            params = params[1:]  # params
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
        defaults = {p.name: p.default for p in named if p.default is not inspect.Parameter.empty}
        return (None if open_ended else tuple(p.name for p in named)), defaults

    @property
    def defaults(self) -> dict[str, Any]:
        return self.signature()[1]

    @property
    def default_lr(self) -> float | None:
        """The ``lr`` default of its signature, if it has a usable one."""
        lr = self.defaults.get("lr")
        ok = isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0
        return float(lr) if ok else None

    def accepts(self, key: str) -> bool:
        accepted, _ = self.signature()
        return accepted is None or key in accepted

    def origin(self) -> dict[str, Any]:
        """``reference``, ``qualname`` and ``package``/``version`` or ``file``/``sha256``."""
        return imports.origin(self.target, self.name, self.plugin)

    def _accepted_text(self) -> str:
        accepted, _ = self.signature()
        return "any keyword (**kwargs)" if accepted is None else ", ".join(accepted) or "no keywords"

    def create(self, params: Iterable[Any], **hparams: Any) -> torch.optim.Optimizer:
        """The optimizer on ``params`` (tensors, named tensors or param-group dicts)."""

        exclude = hparams.pop("exclude_from_decay", None)
        extras = {k: hparams.pop(k) for k in EXTRAS if k in hparams}
        for key, value in extras.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"invalid {key}={value!r}: expected a number >= 0")
        accepted, _ = self.signature()
        if accepted is not None:
            unknown = sorted(set(hparams) - set(accepted))
            if unknown:
                raise UsageError(f"optimizer {self.label} got unknown hyperparameter(s) {unknown}; it accepts: "
                                 f"{self._accepted_text()} (and descentlab's {', '.join(EXTRAS)}, exclude_from_decay)")
        groups = split_decay(as_groups(params), exclude)
        groups = [{**g, "params": [p[1] if isinstance(p, tuple) else p for p in _listed(g["params"])]} for g in groups]
        if any(extras.values()):
            for g in groups:
                for key, value in extras.items():
                    g.setdefault(key, float(value))
        try:
            opt = self.target([dict(g) for g in groups], **hparams)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's constructor failed: say which keyword
            raise self._rejected(groups, hparams, exc) from None
        if not isinstance(opt, torch.optim.Optimizer):
            raise UsageError(f"optimizer factory {self.label} returned {type(opt).__name__}, "
                             "expected a torch.optim.Optimizer")
        if any(float(g.get(k, 0.0) or 0.0) for g in opt.param_groups for k in EXTRAS):
            opt.register_step_pre_hook(regularize)
            opt._descentlab_regularized = True
        opt._descentlab_reference = self.name
        # what ZeroRedundancyOptimizer builds each rank's shard with (distributed/strategy.py)
        opt._descentlab_rebuild = lambda shard, **_: self.create(shard, **hparams, **extras)
        return opt

    def _rejected(self, groups: list[dict[str, Any]], hparams: dict[str, Any], exc: Exception) -> UsageError:
        """The one-line error of a constructor that raised: the keyword without which it builds."""
        culprit = None
        for key in hparams:
            try:
                self.target([dict(g) for g in groups], **{k: v for k, v in hparams.items() if k != key})
            except Exception:  # noqa: BLE001
                continue
            culprit = key
            break
        what = (f"rejected {culprit}={hparams[culprit]!r}" if culprit is not None else
                f"raised on ({', '.join(f'{k}={v!r}' for k, v in hparams.items()) or 'no keywords'})")
        return UsageError(f"optimizer {self.label} {what}: {imports.first_line(exc)} "
                          f"(it accepts: {self._accepted_text()})")


def _listed(params: Any) -> list[Any]:
    return [params] if isinstance(params, torch.Tensor) else list(params)


@torch.no_grad()
def regularize(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Step pre-hook: ``g += l1·sign(p) + l2·p`` and ``p *= 1 − lr·decoupled_decay``, per group."""
    for group in optimizer.param_groups:
        l1, l2, decay = (float(group.get(k, 0.0) or 0.0) for k in EXTRAS)
        if not (l1 or l2 or decay):
            continue
        for p in group["params"]:
            if p.grad is None:
                continue
            if l1:
                p.grad.add_(torch.sign(p), alpha=l1)
            if l2:
                p.grad.add_(p, alpha=l2)
            if decay:
                p.mul_(1 - group["lr"] * decay)


# -- looking one up ------------------------------------------------------------------------


def _make(name: str, obj: Any, label: str, plugin: dict[str, Any] | None) -> ForeignOptimizer:
    if inspect.isclass(obj):
        if not issubclass(obj, torch.optim.Optimizer):
            raise UsageError(f"optimizer {label} is the class {obj.__qualname__}, which is not a "
                             "torch.optim.Optimizer subclass (expected one, or a factory f(params, **hparams))")
        kind = "class"
    elif callable(obj):
        kind = "factory"
    else:
        raise UsageError(f"optimizer {label} is a {type(obj).__name__}, not {EXPECTED}")
    return ForeignOptimizer(name=name, target=obj, kind=kind, summary=imports.summary(obj), plugin=plugin)


CATALOG = imports.Catalog("optimizer", ENTRY_POINT_GROUP, EXPECTED, _make, registry.available)
plugins = CATALOG.plugins


def lookup(optimizer: Any) -> registry.OptimizerSpec | ForeignOptimizer:
    """The registered spec of a name, or a :class:`ForeignOptimizer` for a
    reference, an entry point, a class or a factory. Bad input raises
    UsageError (a ValueError) naming it; an unknown name lists close matches."""
    if isinstance(optimizer, (registry.OptimizerSpec, ForeignOptimizer)):
        return optimizer
    if isinstance(optimizer, str):
        text = optimizer.strip()
        if imports.is_reference(text):
            return CATALOG.reference(text)
        key = text.lower().replace("-", "_")
        return registry.get(key) if key in registry.available() else CATALOG.plugin(text)
    if callable(optimizer):
        return CATALOG.object(optimizer)
    raise UsageError(f"invalid optimizer {optimizer!r}: expected a name, package.module:Name, path/to/file.py:Name, "
                     f"or {EXPECTED}")


def canonical(optimizer: Any) -> str:
    """The string that names ``optimizer`` in configurations and other processes."""
    return lookup(optimizer).name


def is_registered(optimizer: Any) -> bool:
    return isinstance(lookup(optimizer), registry.OptimizerSpec)


def origin(optimizer: Any) -> dict[str, Any]:
    """Where the optimizer came from (recorded beside every result)."""
    spec = lookup(optimizer)
    if isinstance(spec, ForeignOptimizer):
        return spec.origin()
    return imports.own_origin("descentlab.optim", spec.name)
