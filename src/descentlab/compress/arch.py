"""Architectures by name, for teachers and students: ``resolve_arch(spec, wl)``.

The ARCH grammar (``--teacher ARCH``, ``--student ARCH``):

==========================  ===========================================================
``mnist1d-cnn`` (any         that built-in workload's model (its ``make_model``); the
built-in workload name)      data must have the same input and output sizes
``cnn-C``                    ConvNet1d with C channels per layer for ``(N, L)`` signals
                             (``(N, 1, L)`` too); ConvNet2d with channels (C, 2C) for
                             ``(N, 1, H, W)`` images (see :mod:`descentlab.workloads.models`)
``mlp-H1xH2x...``            an MLP with those hidden sizes and ReLU between:
                             ``mlp-64``, ``mlp-100x100`` (inputs flattened)
``logreg``                   one linear layer: multinomial logistic regression
``path/to/file.py:FUNC``,    ``FUNC()`` returning an ``nn.Module``; FUNC may take
``package.module:FUNC``      ``input_shape`` (a tuple, one example's shape) and
                             ``num_classes`` keyword arguments, which it is then given
==========================  ===========================================================

Input and output sizes come from the workload's data: one example's shape
``x.shape[1:]`` of the training split, and ``num_classes`` (or the largest
training label + 1). A user's file is imported as a user workload file is
(:mod:`descentlab.workloads.user`: its folder on ``sys.path``, imported once per
process; every failure one :class:`~descentlab.errors.UsageError`). Only
classification workloads can be distilled. :func:`check_outputs` compares a
teacher's and a student's outputs on a batch of training inputs.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..workloads import Workload
from ..workloads.models import ConvNet1d, ConvNet2d, mlp

FORMS = ("a built-in workload name (its model)", "cnn-C", "mlp-H1xH2...", "logreg",
         "path/to/file.py:FUNC", "package.module:FUNC")

_CNN = re.compile(r"cnn-(\d+)")
_MLP = re.compile(r"mlp-(\d+(?:x\d+)*)")


def check_classification(wl: Workload) -> None:
    if wl.task != "classification":
        raise UsageError(f"only classification workloads can be distilled (soft targets are class probabilities); "
                         f"{wl.name} is a {wl.task} workload")


def example_inputs(wl: Workload, n: int = 64) -> Tensor:
    """The first ``n`` training inputs (in-memory tensors or a Dataset's items, collated)."""
    from ..train.data import as_batches

    batch = next(iter(as_batches(wl.train, min(n, wl.num_examples("train")), seed=0).epoch(0)))
    if isinstance(batch, Mapping):
        raise UsageError(f"{wl.name}: dict batches cannot be distilled here (a model of one tensor input is needed)")
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor):
        raise UsageError(f"{wl.name}: the training inputs are {type(x).__name__}, expected tensors")
    return x


def num_classes(wl: Workload) -> int:
    if wl.num_classes is not None:
        return int(wl.num_classes)
    if isinstance(wl.train, (tuple, list)) and isinstance(wl.train[1], Tensor):
        return int(wl.train[1].max()) + 1
    raise UsageError(f"{wl.name}: num_classes is not set and cannot be read from the training split")


def _unknown(spec: Any) -> UsageError:
    return UsageError(f"unknown architecture {spec!r}: expected {', '.join(FORMS)} "
                      "(e.g. mnist1d-cnn, cnn-8, mlp-100x100, logreg, my_nets.py:small)")


def resolve_arch(spec: str, wl: Workload) -> Callable[[], nn.Module]:
    """A factory of fresh, untrained models of ``spec`` (module docstring) for ``wl``'s data.

    The factory draws its initialisation from torch's global generator, as a
    workload's ``make_model`` does: ``torch.manual_seed(s)`` before it is called
    makes the model reproducible.
    """
    check_classification(wl)
    if not isinstance(spec, str) or not spec.strip():
        raise _unknown(spec)
    spec = spec.strip()
    shape = tuple(example_inputs(wl, 2).shape[1:])
    classes = num_classes(wl)
    if ":" in spec:
        return _user_factory(spec, shape, classes)
    if m := _CNN.fullmatch(spec):
        return _cnn(spec, int(m.group(1)), shape, classes)
    if m := _MLP.fullmatch(spec):
        hidden = [int(h) for h in m.group(1).split("x")]
        return _mlp(spec, hidden, shape, classes)
    if spec == "logreg":
        return _mlp(spec, [], shape, classes)
    from ..workloads import registry

    try:
        registry.get(spec)
    except (ValueError, TypeError):
        raise _unknown(spec) from None
    other = registry.load(spec, seed=wl.seed)
    return other.make_model


def _positive(spec: str, sizes: list[int]) -> None:
    if any(s < 1 for s in sizes):
        raise UsageError(f"invalid architecture {spec!r}: sizes must be integers >= 1")


def _cnn(spec: str, channels: int, shape: tuple[int, ...], classes: int) -> Callable[[], nn.Module]:
    _positive(spec, [channels])
    if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
        length = shape[-1]
        try:
            ConvNet1d(length, classes, channels=channels)
        except ValueError as exc:
            raise UsageError(f"architecture {spec!r}: {exc}") from None
        return lambda: ConvNet1d(length, classes, channels=channels)
    if len(shape) == 3 and shape[0] == 1:
        h, w = shape[1], shape[2]
        try:
            ConvNet2d(h, w, classes, channels=(channels, 2 * channels))
        except ValueError as exc:
            raise UsageError(f"architecture {spec!r}: {exc}") from None
        return lambda: ConvNet2d(h, w, classes, channels=(channels, 2 * channels))
    raise UsageError(f"architecture {spec!r} needs (N, L) signals or (N, 1, H, W) images; "
                     f"the inputs are (N, {', '.join(map(str, shape))})")


def _mlp(spec: str, hidden: list[int], shape: tuple[int, ...], classes: int) -> Callable[[], nn.Module]:
    _positive(spec, hidden)
    d = 1
    for s in shape:
        d *= s
    sizes = [d, *hidden, classes]
    if len(shape) == 1:
        return lambda: mlp(sizes)
    return lambda: nn.Sequential(nn.Flatten(), *mlp(sizes))


def _user_factory(spec: str, shape: tuple[int, ...], classes: int) -> Callable[[], nn.Module]:
    from .. import imports

    try:
        fn = imports.target(spec, "model", "a function that returns a torch.nn.Module")
    except UsageError as exc:
        raise UsageError(f"architecture {spec!r}: {exc}") from None
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in (("input_shape", shape), ("num_classes", classes)) if k in params or takes_any}

    def make() -> nn.Module:
        try:
            model = fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's code failed
            raise UsageError(f"architecture {spec!r} raised {imports.first_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise UsageError(f"architecture {spec!r} returned {type(model).__name__}, expected a torch.nn.Module")
        return model

    return make


def output_shape(model: nn.Module, example: Tensor, label: str) -> tuple[int, ...]:
    """The shape of ``model(example)`` in eval mode (the model's mode is kept)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as exc:  # noqa: BLE001 - a model that does not fit the data
        raise UsageError(f"{label} fails on the training inputs of shape {tuple(example.shape)}: "
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    finally:
        model.train(was)
    if not isinstance(out, Tensor):
        raise UsageError(f"{label} returns {type(out).__name__}, expected a tensor of logits")
    return tuple(out.shape)


def check_outputs(teacher: nn.Module, student: nn.Module, example: Tensor, *, teacher_name: str = "teacher",
                  student_name: str = "student") -> tuple[int, ...]:
    """The common output shape of teacher and student on ``example``; a UsageError naming both when they differ."""
    t = output_shape(teacher, example, f"teacher {teacher_name}")
    s = output_shape(student, example, f"student {student_name}")
    if t != s:
        raise UsageError(f"teacher {teacher_name} outputs {_n(t)} but student {student_name} outputs {_n(s)}: "
                         "distillation needs the same logits shape")
    return t


def _n(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"
