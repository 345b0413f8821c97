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
``layers=N``                 the workload's own model with N layers: a Hugging Face
                             model (``model.config``; nanoGPT-style ``model.cfg``
                             too) rebuilt as ``type(model)(config)`` from a copy of
                             its config with ``num_hidden_layers`` (``n_layer``,
                             ``num_layers``: whichever the config has) set to N
``path/to/file.py:FUNC``,    ``FUNC()`` returning an ``nn.Module``; FUNC may take
``package.module:FUNC``      ``input_shape`` (a tuple, one example's shape) and
                             ``num_classes`` keyword arguments, which it is then given
                             where the data say them (tensor inputs, class labels)
==========================  ===========================================================

Input and output sizes come from the workload's data: one example's shape
``x.shape[1:]`` of the training split, and ``num_classes`` (or the largest
training label + 1). ``cnn-C``, ``mlp-...`` and ``logreg`` need tensor inputs;
a model of dict batches (a Hugging Face model) takes ``layers=N`` or a file's
function. A user's file is imported as a user workload file is
(:mod:`descentlab.workloads.user`: its folder on ``sys.path``, imported once per
process; every failure one :class:`~descentlab.errors.UsageError`). Any workload
whose model outputs logits can be distilled (:mod:`.logits`), not a regression.
:func:`check_outputs` compares a teacher's and a student's logits on a batch of
training inputs.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from ..errors import UsageError
from ..workloads import Workload
from ..workloads.models import ConvNet1d, ConvNet2d, mlp

FORMS = ("a built-in workload name (its model)", "cnn-C", "mlp-H1xH2...", "logreg", "layers=N",
         "path/to/file.py:FUNC", "package.module:FUNC")
#: where a model keeps its config (Hugging Face: ``config``; nanoGPT-style models: ``cfg`` too)
CONFIG_ATTRS = ("config", "cfg")
#: the names of a config's layer count, in the order they are looked for
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")

_CNN = re.compile(r"cnn-(\d+)")
_MLP = re.compile(r"mlp-(\d+(?:x\d+)*)")
_LAYERS = re.compile(r"layers=(\d+)")


def check_distillable(wl: Workload) -> None:
    """Refuse a regression workload: its model outputs predictions, not logits."""
    if wl.task == "regression":
        raise UsageError(f"only a model that outputs logits can be distilled (per example for classification, per "
                         f"token for a language model); {wl.name} is a regression workload")


def example_inputs(wl: Workload, n: int = 64) -> Tensor:
    """The first ``n`` training inputs (in-memory tensors or a Dataset's items, collated)."""
    from .inputs import example_batch

    batch = example_batch(wl, n)
    if isinstance(batch, Mapping):
        raise UsageError(f"{wl.name}: its batches are dicts ({', '.join(map(str, batch))}), and this needs one tensor "
                         "of inputs: use layers=N (a Hugging Face model) or path/to/file.py:FUNC")
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, Tensor):
        raise UsageError(f"{wl.name}: the training inputs are {type(x).__name__}, expected tensors")
    return x


def config_of(model: nn.Module) -> Any:
    """``model.config`` (Hugging Face) or ``model.cfg``, the first that holds a layer count, or None."""
    return next((getattr(model, a) for a in CONFIG_ATTRS if _count_key(getattr(model, a, None)) is not None), None)


def layer_key(model: nn.Module) -> str | None:
    """The name of the layer count in the model's config (:func:`config_of`), or None."""
    return _count_key(config_of(model))


def _count_key(config: Any) -> str | None:
    if config is None:
        return None
    return next((k for k in LAYER_KEYS if isinstance(getattr(config, k, None), int)
                 and not isinstance(getattr(config, k), bool)), None)


def num_classes(wl: Workload) -> int:
    if wl.num_classes is not None:
        return int(wl.num_classes)
    if isinstance(wl.train, (tuple, list)) and isinstance(wl.train[1], Tensor):
        return int(wl.train[1].max()) + 1
    raise UsageError(f"{wl.name}: num_classes is not set and cannot be read from the training split")


def _unknown(spec: Any) -> UsageError:
    return UsageError(f"unknown architecture {spec!r}: expected {', '.join(FORMS)} "
                      "(e.g. mnist1d-cnn, cnn-8, mlp-100x100, logreg, layers=2, my_nets.py:small)")


def resolve_arch(spec: str, wl: Workload) -> Callable[[], nn.Module]:
    """A factory of fresh, untrained models of ``spec`` (module docstring) for ``wl``'s data.

    The factory draws its initialisation from torch's global generator, as a
    workload's ``make_model`` does: ``torch.manual_seed(s)`` before it is called
    makes the model reproducible.
    """
    check_distillable(wl)
    if not isinstance(spec, str) or not spec.strip():
        raise _unknown(spec)
    spec = spec.strip()
    if ":" in spec:
        return _user_factory(spec, *_sizes(wl))
    if m := _LAYERS.fullmatch(spec):
        return _layers(spec, int(m.group(1)), wl)
    if m := _CNN.fullmatch(spec):
        return _cnn(spec, int(m.group(1)), _tensor_shape(spec, wl), num_classes(wl))
    if m := _MLP.fullmatch(spec):
        hidden = [int(h) for h in m.group(1).split("x")]
        return _mlp(spec, hidden, _tensor_shape(spec, wl), num_classes(wl))
    if spec == "logreg":
        return _mlp(spec, [], _tensor_shape(spec, wl), num_classes(wl))
    from ..workloads import registry

    try:
        registry.get(spec)
    except (ValueError, TypeError):
        raise _unknown(spec) from None
    other = registry.load(spec, seed=wl.seed)
    return other.make_model


def _tensor_shape(spec: str, wl: Workload) -> tuple[int, ...]:
    """One example's input shape, for the architectures built for tensor inputs."""
    from .inputs import example_batch

    batch = example_batch(wl, 2)
    if isinstance(batch, Mapping):
        raise UsageError(f"architecture {spec!r} needs one tensor of inputs, and {wl.name}'s batches are dicts "
                         f"({', '.join(map(str, batch))}): use layers=N (a Hugging Face model) or path/to/file.py:FUNC")
    return tuple(example_inputs(wl, 2).shape[1:])


def _sizes(wl: Workload) -> tuple[tuple[int, ...] | None, int | None]:
    """One example's input shape and the number of classes, where the data say them (else None)."""
    from .inputs import example_batch

    batch = example_batch(wl, 2)
    x = batch[0] if isinstance(batch, (tuple, list)) else None
    shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else None
    try:
        classes = num_classes(wl) if wl.task == "classification" else None
    except UsageError:
        classes = None
    return shape, classes


def _layers(spec: str, n: int, wl: Workload) -> Callable[[], nn.Module]:
    _positive(spec, [n])
    base = wl.make_model()
    key = layer_key(base)
    if key is None:
        raise UsageError(f"architecture {spec!r} needs a Hugging Face model (model.config with "
                         f"{', '.join(LAYER_KEYS[:-1])} or {LAYER_KEYS[-1]}); {wl.name}'s model "
                         f"{type(base).__name__} has none: pass path/to/file.py:FUNC (FUNC() returns the model)")
    from .. import imports

    config = config_of(base)
    if dataclasses.is_dataclass(config):  # frozen ones too
        config = dataclasses.replace(config, **{key: n})
    else:
        config = copy.deepcopy(config)
        setattr(config, key, n)
    cls = type(base)
    p = next((t for t in base.parameters() if t.is_floating_point()), None)
    dtype = p.dtype if p is not None else None

    def make() -> nn.Module:
        try:
            model = cls(config)
        except Exception as exc:  # noqa: BLE001 - a class not built from its config alone
            raise UsageError(f"architecture {spec!r}: {cls.__name__}(config) with {key}={n} raised "
                             f"{imports.first_line(exc)}") from None
        return model.to(dtype) if dtype is not None else model

    return make


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


def _user_factory(spec: str, shape: tuple[int, ...] | None, classes: int | None) -> Callable[[], nn.Module]:
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
    kwargs = {k: v for k, v in (("input_shape", shape), ("num_classes", classes))
              if v is not None and (k in params or takes_any)}

    def make() -> nn.Module:
        try:
            model = fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's code failed
            raise UsageError(f"architecture {spec!r} raised {imports.first_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise UsageError(f"architecture {spec!r} returned {type(model).__name__}, expected a torch.nn.Module")
        return model

    return make


def output_shape(model: nn.Module, example: Any, label: str) -> tuple[int, ...]:
    """The shape of ``model``'s logits on ``example`` (a tensor of inputs, or a batch:
    a tuple or a dict), in eval mode (the model's mode is kept)."""
    from .logits import logits_on

    return tuple(logits_on(model, (example,) if isinstance(example, Tensor) else example, label).shape)


def check_outputs(teacher: nn.Module, student: nn.Module, example: Any, *, teacher_name: str = "teacher",
                  student_name: str = "student") -> tuple[int, ...]:
    """The common logits shape of teacher and student on ``example``; a UsageError naming both when they differ."""
    t = output_shape(teacher, example, f"teacher {teacher_name}")
    s = output_shape(student, example, f"student {student_name}")
    if t[1:] != s[1:]:
        raise UsageError(f"teacher {teacher_name} outputs {_n(t)} but student {student_name} outputs {_n(s)}: "
                         "distillation needs the same logits shape")
    return t


def _n(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"
