"""Structured pruning that makes the model smaller: channels and neurons removed
on Torch-Pruning's dependency graph, with the optimizer's state carried across.

Why Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning",
CVPR 2023): removing an output channel of a layer means removing the matching
input channel of every layer that reads it — through BatchNorm, flattening,
residual additions, concatenations — and its dependency graph finds these
couplings by tracing the model once, for the layers of ``torch.nn`` and
unwrapped parameters. Hand-written graph code would cover fewer models and
fail more quietly. torch's own ``prune.ln_structured`` only masks (the tensor
keeps its shape), and NNI's speed-up asks for a new optimizer after pruning.

What Torch-Pruning does not do is the optimizer (its issue #120): it replaces
each pruned parameter by a new, smaller ``nn.Parameter``, so the optimizer
would go on stepping the old tensors, and momentum buffers and Adam moments
would be lost or misaligned. :class:`ChannelPruner` records every slice
Torch-Pruning takes (all its layer pruners go through one method,
``BasePruningFunc._prune_parameter_and_grad(weight, keep_idxs, dim)``, which is
wrapped for the duration of a prune) and applies the same slices to the
optimizer: the new parameter takes the old one's place in its param group, and
each state tensor keeps exactly the entries of the kept channels —

* state of the parameter's shape (momentum, ``exp_avg``, ``exp_avg_sq``,
  ``max_exp_avg_sq``, schedule-free's ``z``, Prodigy's ``p0``) is sliced
  along the pruned dimension;
* factored state broadcast against the parameter (Adafactor's row and column
  second moments: size 1 along the dimension it averages) is sliced where it
  has that dimension and kept where it is averaged over it — those averages
  still include the removed entries until the next updates wash them out;
* scalars (step counts, Prodigy's ``d``) are kept.

So training continues from the same optimizer state on the kept channels.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..train.batch import logits_of
from ..train.callbacks import Callback
from .inputs import call
from .magnitude import PRUNABLE, check_sparsity

#: the layers whose output channels (Conv) or neurons (Linear) are removed
ROOTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _tp():
    import torch_pruning as tp

    return tp


@dataclass
class Slice:
    """One parameter replaced by a smaller one: ``new = old.index_select(dim, keep)``."""

    old: Tensor
    new: Tensor
    dim: int
    keep: Tensor


@contextlib.contextmanager
def recording_slices(log: list[Slice]):
    """Record every parameter slice Torch-Pruning takes inside the block."""
    base = _tp().pruner.function.BasePruningFunc
    original = base._prune_parameter_and_grad

    def recorded(self, weight, keep_idxs, pruning_dim):
        new = original(self, weight, keep_idxs, pruning_dim)
        keep = torch.as_tensor(list(keep_idxs), dtype=torch.long)
        log.append(Slice(weight, new, pruning_dim % weight.ndim, keep))
        return new

    base._prune_parameter_and_grad = recorded
    try:
        yield log
    finally:
        base._prune_parameter_and_grad = original


def _compose(log: Sequence[Slice]) -> list[tuple[Tensor, Tensor, list[tuple[int, Tensor, int]]]]:
    """``(original, final, [(dim, keep, size_before)...])``: chains of slices of one
    parameter (a layer whose outputs and inputs are both pruned) followed through."""
    chains: dict[int, tuple[Tensor, list[tuple[int, Tensor, int]]]] = {}
    final: dict[int, Tensor] = {}
    for s in log:
        origin, steps = chains.pop(id(s.old), (s.old, []))
        final.pop(id(s.old), None)
        steps = [*steps, (s.dim, s.keep, s.old.shape[s.dim])]
        chains[id(s.new)] = (origin, steps)
        final[id(s.new)] = s.new
    return [(origin, final[k], steps) for k, (origin, steps) in chains.items()]


def _slice_state(key: str, value: Any, steps: list[tuple[int, Tensor, int]], shape: torch.Size) -> Any:
    if not isinstance(value, Tensor) or value.ndim == 0:
        return value
    if value.ndim != len(shape):
        raise UsageError(f"cannot carry the optimizer state {key!r} of shape {tuple(value.shape)} across a prune of a "
                         f"parameter of shape {tuple(shape)}")
    for dim, keep, before in steps:
        if value.shape[dim] == before:
            value = value.index_select(dim, keep.to(value.device))
        elif value.shape[dim] != 1:
            raise UsageError(f"cannot carry the optimizer state {key!r} of shape {tuple(value.shape)} across a prune "
                             f"of dimension {dim} of a parameter of shape {tuple(shape)}")
    return value.contiguous()


def carry_optimizer(optimizer: torch.optim.Optimizer, log: Sequence[Slice]) -> int:
    """Put the pruned parameters in the optimizer in place of the old ones, with their
    state sliced to the kept channels; returns how many parameters were replaced."""
    replaced = 0
    for origin, new, steps in _compose(log):
        for group in optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                if p is origin:
                    group["params"][i] = new
                    state = optimizer.state.pop(origin, None)
                    if state:
                        optimizer.state[new] = {k: _slice_state(k, v, steps, origin.shape) for k, v in state.items()}
                    replaced += 1
    return replaced


def output_layers(model: nn.Module, example: Any) -> list[nn.Module]:
    """The prunable layers whose outputs are the model's output (left whole, or the
    output would change shape): found by tracing which layer's result is returned."""
    outputs: dict[int, nn.Module] = {}

    def hook(module, args, out):
        if isinstance(out, Tensor):
            outputs[id(out)] = module

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            result = call(model, example)
    finally:
        for h in handles:
            h.remove()
    results = result if type(result) in (tuple, list) else [logits_of(result)]
    found = [outputs[id(r)] for r in results if isinstance(r, Tensor) and id(r) in outputs]
    if not found:  # the output went through something after the last layer: leave the last one whole
        last = [m for m in model.modules() if isinstance(m, PRUNABLE)]
        found = last[-1:]
    return found


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)


def _failing_layer(pruner, model: nn.Module) -> str:
    """The first layer whose pruning group Torch-Pruning cannot build or score."""
    graph = pruner.DG
    for name, module in model.named_modules():
        if not isinstance(module, ROOTS) or module in pruner.ignored_layers:
            continue
        try:
            group = graph.get_pruning_group(module, graph.get_pruner_of_module(module).prune_out_channels, [0])
            pruner.importance(group)
        except Exception:  # noqa: BLE001 - this is the one
            return name
    return "(unknown)"


def unknown_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the modules that hold parameters of their own and that
    Torch-Pruning has no pruner for (it maps them to an element-wise op), such as
    Hugging Face's ``Conv1D`` (GPT-2's attention and MLP): it can slice their
    parameters only as loose tensors, along their last dimension."""
    ops = _tp().ops
    return [(n, m) for n, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False)) and ops.module2type(m) == ops.OPTYPE.ELEMENTWISE]


def _why(model: nn.Module, exc: BaseException) -> str:
    """The reason Torch-Pruning failed on ``model``: the first layer it has no pruner for, if any."""
    unknown = unknown_layers(model)
    cause = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if not unknown:
        return cause
    name, module = unknown[0]
    more = f" and {len(unknown) - 1} more such layer{'s' if len(unknown) > 2 else ''}" if len(unknown) > 1 else ""
    return (f"Torch-Pruning has no pruner for its layer {name!r}, a {type(module).__module__}.{type(module).__name__}"
            f"{more}, so it cannot slice it together with the layers it feeds ({cause}); prune without --structured")


def _cubic_ratios(ratio: float, steps: int) -> list[float]:
    """Zhu & Gupta's cubic schedule over Torch-Pruning's iterative steps."""
    return [ratio * (1 - (1 - k / steps) ** 3) for k in range(steps + 1)]


class ChannelPruner:
    """Remove ``ratio`` of the channels of every Conv layer and of the neurons of
    every Linear layer (their L2 magnitude, summed over the coupled group, decides
    which), in ``steps`` steps on the cubic schedule, keeping the layers that give
    the model's output whole.

    ``example``: an input batch, to trace the model. A model the dependency graph
    cannot prune — Torch-Pruning fails on it, or the pruned model no longer runs
    (a shape written into its ``forward``, say) — is refused here, before
    anything is changed, by a trial on a copy: a UsageError names the layer.
    """

    def __init__(self, model: nn.Module, example: Any, ratio: float, *, steps: int = 1,
                 ignore: Iterable[nn.Module | str] = (), global_pruning: bool = False, round_to: int | None = None):
        self.ratio = check_sparsity(ratio, "channel sparsity")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UsageError(f"invalid steps={steps!r}: expected an integer >= 1")
        self.model, self.example, self.steps = model, example, steps
        names = dict(model.named_modules())
        keep: list[nn.Module] = []
        for item in ignore:
            if isinstance(item, str):
                if item not in names:
                    raise UsageError(f"no layer named {item!r} to leave unpruned")
                keep.append(names[item])
            else:
                keep.append(item)
        self.ignored = keep + [m for m in output_layers(model, example) if all(m is not k for k in keep)]
        self.options = {"global_pruning": global_pruning, "round_to": round_to}
        self._trial()
        self.pruner = self._pruner(model, self.ignored)
        self.done = 0
        self.history: list[dict[str, Any]] = []

    def _pruner(self, model: nn.Module, ignored: list[nn.Module]):
        tp = _tp()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unwrapped parameters detected": handled as documented by it
            return tp.pruner.MagnitudePruner(
                model, self.example, importance=tp.importance.MagnitudeImportance(p=2),
                pruning_ratio=self.ratio, iterative_steps=self.steps,
                iterative_pruning_ratio_scheduler=_cubic_ratios, ignored_layers=ignored,
                output_transform=logits_of,  # trace from the logits of a Hugging Face output (not its cache)
                **self.options,
            )

    def _trial(self) -> None:
        """Prune a copy all the way, and run it: refuse the model if that fails."""
        trial = copy.deepcopy(self.model)
        index = {id(m): i for i, m in enumerate(self.model.modules())}
        mods = list(trial.modules())
        ignored = [mods[index[id(m)]] for m in self.ignored if id(m) in index]
        with torch.no_grad():
            before = logits_of(call(trial, self.example))
        try:
            pruner = self._pruner(trial, ignored)
        except Exception as exc:  # noqa: BLE001 - Torch-Pruning's tracing failed: name the model and the layer
            raise UsageError(f"the structured pruner cannot trace {type(self.model).__name__}: "
                             f"{_why(self.model, exc)}") from None
        for _ in range(self.steps):
            groups = pruner.step(interactive=True)  # importance is computed as the groups are drawn
            while True:
                try:
                    group = next(groups)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - Torch-Pruning failed on a layer: find which
                    raise UsageError(f"the structured pruner cannot prune layer {_failing_layer(pruner, trial)!r} of "
                                     f"{type(self.model).__name__}: {type(exc).__name__}: {exc}") from None
                root = _name_of(trial, group[0].dep.target.module)
                try:
                    group.prune()
                except Exception as exc:  # noqa: BLE001
                    raise UsageError(f"the structured pruner cannot prune layer {root!r} of "
                                     f"{type(self.model).__name__}: {type(exc).__name__}: {exc}") from None
        pruned = [n for n, m in trial.named_modules() if isinstance(m, ROOTS)
                  and any(p.shape != q.shape for p, q in zip(m.parameters(), dict(self.model.named_modules())[n].parameters()))]
        try:
            with torch.no_grad():
                after = logits_of(call(trial, self.example))
        except Exception as exc:  # noqa: BLE001
            where = ", ".join(pruned[:4]) or "its layers"
            raise UsageError(f"{type(self.model).__name__} no longer runs once channels of {where} are removed "
                             f"(a size fixed in its forward?): {type(exc).__name__}: {exc}") from None
        if isinstance(before, Tensor) and isinstance(after, Tensor) and before.shape != after.shape:
            raise UsageError(f"pruning channels changes {type(self.model).__name__}'s output from "
                             f"{tuple(before.shape)} to {tuple(after.shape)}: leave its output layer unpruned (ignore=)")

    def step(self, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
        """One pruning step (of ``steps``); the optimizer, if given, carries its state
        across. Returns what was removed."""
        if self.done >= self.steps:
            raise UsageError(f"all {self.steps} pruning steps are done")
        before = sum(p.numel() for p in self.model.parameters())
        log: list[Slice] = []
        with recording_slices(log):
            self.pruner.step()
        replaced = carry_optimizer(optimizer, log) if optimizer is not None else 0
        self.done += 1
        after = sum(p.numel() for p in self.model.parameters())
        record = {"step": self.done, "target_ratio": _cubic_ratios(self.ratio, self.steps)[self.done],
                  "parameters_before": before, "parameters": after, "optimizer_params_replaced": replaced}
        self.history.append(record)
        return record

    def run(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Every remaining step at once (one-shot pruning)."""
        while self.done < self.steps:
            self.step(optimizer)

    def pruning_history(self) -> list:
        """Torch-Pruning's record of what was removed (layer names and channel
        indices), which rebuilds the architecture on a fresh model."""
        return self.pruner.pruning_history()


def prune_channels(model: nn.Module, example: Any, ratio: float, *, optimizer: torch.optim.Optimizer | None = None,
                   ignore: Iterable[nn.Module | str] = ()) -> ChannelPruner:
    """One-shot structured pruning of ``ratio`` of the channels (see :class:`ChannelPruner`)."""
    pruner = ChannelPruner(model, example, ratio, ignore=ignore)
    pruner.run(optimizer)
    return pruner


class ChannelPruning(Callback):
    """Structured pruning during training: ``steps`` prunes on the cubic schedule,
    ``frequency`` optimizer steps apart from ``start``, with the optimizer's state
    carried across each (see :class:`ChannelPruner`).

    ``jumps`` records, for each prune, the mean training loss of the ``WINDOW``
    steps before it and of the ``WINDOW`` steps after it. ``module``: what to
    prune when it is not the Trainer's model itself (the student of a
    :class:`~.distill.Distiller`, whose forward in training takes cache indices)."""

    WINDOW = 10

    def __init__(self, example: Any, ratio: float, *, start: int = 0, steps: int = 4, frequency: int = 100,
                 ignore: Iterable[nn.Module | str] = (), module: nn.Module | None = None):
        self.example, self.ratio, self.start = example, check_sparsity(ratio, "channel sparsity"), start
        self.module = module
        self.steps, self.frequency, self.ignore = steps, frequency, list(ignore)
        self.pruner: ChannelPruner | None = None
        self.recent: list[float] = []
        self.jumps: list[dict[str, Any]] = []

    def on_fit_start(self, trainer) -> None:
        target = self.module if self.module is not None else trainer.model
        self.pruner = ChannelPruner(target, self.example, self.ratio, steps=self.steps, ignore=self.ignore)
        if self.start == 0:
            self._prune(trainer)

    def on_step_end(self, trainer, logs: dict[str, Any]) -> None:
        loss = trainer.last_loss
        open_jump = self.jumps[-1] if self.jumps and len(self.jumps[-1]["after_losses"]) < self.WINDOW else None
        if open_jump is not None:
            open_jump["after_losses"].append(loss)
            if len(open_jump["after_losses"]) == self.WINDOW:
                open_jump["after"] = sum(open_jump["after_losses"]) / self.WINDOW
        self.recent = [*self.recent[-(self.WINDOW - 1):], loss]
        k = trainer.step - self.start
        if self.pruner is not None and k >= 0 and k % self.frequency == 0 and self.pruner.done < self.steps:
            self._prune(trainer)

    def _prune(self, trainer) -> None:
        record = self.pruner.step(trainer.optimizer)
        before = sum(self.recent) / len(self.recent) if self.recent else None
        self.jumps.append({"step": trainer.step, "before": before, "after": None, "after_losses": [],
                           "parameters": record["parameters"]})
        trainer.best.reset()

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.pruner.history if self.pruner else []


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

