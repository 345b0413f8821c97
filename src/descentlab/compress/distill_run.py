"""``descentlab distill``: a teacher, a student taught by it, and the same student from scratch.

The pipeline, for a workload's recipe and a seed:

1. the teacher: the workload's own model trained with its recipe, exactly as
   ``descentlab train`` trains it (or ``teacher=ARCH`` trained with the same
   recipe, or ``teacher_model``, an already trained module);
2. the student, ``torch.manual_seed(seed)`` then built, trained with the
   recipe's optimizer, schedule, batch size and budget on
   :func:`~.distill.distillation_loss` against the teacher's logits (cached
   once for in-memory training data: :class:`~.distill.Distiller`);
3. the control, "scratch": the same student architecture from the same seed's
   initialisation, the same optimizer, schedule, batches and budget, on the
   workload's own loss (the labels only). Only the loss differs, so the margin
   ``student - scratch`` is what the teacher's soft targets give.

Defaults, chosen by measurement on mnist1d-cnn, seed 0, the recipe's budget
(4000 steps of Adam, batch 100; the teacher ConvNet1d of 25 channels, 5,210
parameters; ``python benchmarks/distill_quality.py --choose``):

teacher test accuracy 0.945; test accuracy of each student from scratch and
distilled (margin in points):

=========  ==========  =======  ============  ============  ============  ============
student    parameters  scratch  T=2, a=0.5    T=2, a=0.9    T=4, a=0.5    T=4, a=0.9
=========  ==========  =======  ============  ============  ============  ============
cnn-8      858         0.811    0.840 (+2.9)  0.850 (+3.9)  0.858 (+4.7)  0.862 (+5.1)
cnn-5      450         0.741    0.764 (+2.3)  0.727 (-1.4)  0.709 (-3.2)  0.719 (-2.2)
mlp-32     1,642       0.589    0.587 (-0.2)  0.581 (-0.8)  0.600 (+1.1)  0.603 (+1.4)
=========  ==========  =======  ============  ============  ============  ============

So the default student is ``cnn-8`` (858 parameters, 0.16x the teacher's) with
T=4 and alpha=0.9: the largest margin, and the one student for which every
setting helped. It keeps the teacher's convolutional structure at a third of
its channels. ``cnn-5`` gained only at T=2, alpha=0.5 and lost elsewhere (our
reading, not tested further: too little capacity to fit the softer targets as
well as the labels); an MLP, though twice cnn-8's size, lacks the convolutions
that MNIST-1D's shifted signals reward (59% from scratch) and gained little.
The 1000 test signals put about ±1.1 points of noise on each
accuracy; the choice was made on seed 0 only, and seeds 0-2 are measured in
BENCHMARKS.md ("distill").

Elsewhere (no measurement) the default student (:func:`default_student`) is

* for a teacher with a config holding a layer count (a Hugging Face model's
  ``config``, a nanoGPT-style ``cfg``): the workload's model with half the
  teacher's layers, ``layers=N//2`` — the usual way a
  distilled LM is made smaller (DistilBERT, DistilGPT-2: half the layers,
  the same width);
* for tensor inputs: ``cnn-8`` when they suit a CNN ((N, L) signals or
  (N, 1, H, W) images) and ``mlp-32`` otherwise;
* for anything else (a model of dict batches without a config): none, a
  UsageError asking for ``--student layers=N`` or ``--student file.py:FUNC``.

Any workload whose model outputs logits can be distilled, per example or per
token (a language model; :mod:`.logits` finds which on one batch, and whether
its labels are shifted). The summary's metric is the workload's:
``test_accuracy`` for classification, ``test_loss`` for a language model whose
metric is its loss; ``margin`` is student − scratch of that metric, and
``metric_mode`` says whether higher (``max``) or lower (``min``) is better.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .arch import check_distillable, config_of, example_inputs, layer_key, resolve_arch
from .distill import A_DEFAULT, T_DEFAULT, DistillationLoss, Distiller, check_alpha, check_temperature
from .fit import evaluate, fit, new_optimizer, plan_for, train_dense
from .inputs import example_batch
from .logits import Layout, check_same, layout_of
from .measure import parameters

#: the measured default student of a workload (module docstring)
DEFAULT_STUDENTS = {"mnist1d-cnn": "cnn-8"}


@dataclass
class DistillResult:
    """``summary``: the content of summary.json; ``paths``: the files written
    (``summary``, ``report``; empty without ``out``); ``models``: teacher,
    student and scratch modules."""

    summary: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    models: dict[str, nn.Module] = field(default_factory=dict)


def default_student(wl, model: nn.Module | None = None, *, per: str = "example") -> str:
    """The student ARCH when none is given (module docstring). ``model``: the teacher,
    whose Hugging Face config's layers are halved (default: the workload's model);
    ``per``: how its logits line up with the targets (:func:`~.logits.layout_of`)."""
    if wl.name in DEFAULT_STUDENTS:
        return DEFAULT_STUDENTS[wl.name]
    model = wl.make_model() if model is None else model
    key = layer_key(model)
    if key is not None:
        layers = getattr(config_of(model), key)
        if layers < 2:
            raise UsageError(f"no default student for {wl.name}: its model {type(model).__name__} has {layers} layer "
                             f"({key}), which cannot be halved; pass --student layers=N or path/to/file.py:FUNC")
        return f"layers={layers // 2}"
    if per != "example" or isinstance(example_batch(wl, 2), Mapping):
        what = "takes dict batches" if per == "example" else "outputs per-token logits"
        raise UsageError(f"no default student for {wl.name}: its model {type(model).__name__} {what} and has no "
                         f"Hugging Face config with a layer count; pass --student layers=N (a Hugging Face model "
                         f"with N layers) or --student path/to/file.py:FUNC (FUNC() returns the student)")
    shape = tuple(example_inputs(wl, 2).shape[1:])
    return "cnn-8" if len(shape) == 1 or (len(shape) in (2, 3) and shape[0] == 1) else "mlp-32"


def _check_steps(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"invalid {name}={value!r}: expected an integer >= 1")


def distill(workload: str, *, teacher: str | None = None, student: str | None = None, seed: int = 0,
            out: str | os.PathLike | None = None, temperature: float = T_DEFAULT, alpha: float = A_DEFAULT,
            steps: int | None = None, teacher_steps: int | None = None, cache: bool = True,
            teacher_model: nn.Module | None = None, data_dir: str | None = None, optimizer: Any = None,
            lr: float | None = None, opt: dict[str, Any] | None = None, log=print) -> DistillResult:
    """Teacher, distilled student and scratch student on ``workload`` (module docstring).

    ``teacher``/``student``: ARCH specs (:func:`~.arch.resolve_arch`; default:
    the workload's model, and :func:`default_student`). ``steps``: the
    student's and scratch's budget (default the recipe's); ``teacher_steps``:
    the teacher's (default the recipe's). ``optimizer``/``lr``/``opt``: the
    optimizer of every training here (any optimizer; default the recipe's). ``cache``: precompute the teacher's
    logits of the training split (in-memory data, per example only: per-token
    logits are L×V numbers an example; the same result as without, faster). Every input is checked before anything is trained or
    written: bad values raise :class:`~descentlab.errors.UsageError`.
    """
    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    _check_steps("steps", steps)
    _check_steps("teacher_steps", teacher_steps)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"invalid seed={seed!r}: expected an integer >= 0")
    if teacher is not None and teacher_model is not None:
        raise UsageError("give teacher= (an architecture to train) or teacher_model= (a trained module), not both")
    optimizer_settings = {"optimizer": optimizer, "lr": lr, "opt": opt}
    plan = plan_for(workload, seed=seed, steps=steps, data_dir=data_dir, **optimizer_settings)
    wl = plan["workload"]
    check_distillable(wl)
    teacher_plan = plan_for(workload, seed=seed, steps=teacher_steps, data_dir=data_dir, **optimizer_settings)
    teacher_arch = teacher or ("given" if teacher_model is not None else wl.name)
    make_teacher = resolve_arch(teacher, wl) if teacher is not None else wl.make_model
    probe_teacher = teacher_model if teacher_model is not None else make_teacher()
    example = example_batch(wl, 64)
    layout = layout_of(wl, probe_teacher, example, f"teacher {teacher_arch}")
    student_arch = student or default_student(wl, probe_teacher, per=layout.per)
    make_student = resolve_arch(student_arch, wl)
    check_same(layout, layout_of(wl, make_student(), example, f"student {student_arch}"), teacher_arch, student_arch)

    started = time.perf_counter()
    histories: dict[str, Any] = {}
    if teacher_model is not None:
        log(f"{wl.name}: the teacher is the model given")
        teacher_net = teacher_model
    else:
        log(f"{wl.name}: training the teacher {teacher_arch} ({teacher_plan['total_steps']} steps, seed {seed})")
        if teacher is None:
            fitted = train_dense(teacher_plan, seed=seed)
        else:
            torch.manual_seed(seed)
            net = make_teacher()
            opt, sched = new_optimizer(teacher_plan, net)
            fitted = fit(teacher_plan, net, opt, sched, seed=seed)
        teacher_net = fitted.model
        histories["teacher"] = fitted.trainer.history
    teacher_net.eval()

    cached = cache and isinstance(wl.train, (tuple, list)) and layout.per == "example"
    log(f"  distilling into {student_arch} ({plan['total_steps']} steps, T={temperature:g}, alpha={alpha:g}, "
        f"{layout.describe()}{', teacher logits cached' if cached else ''})")
    student_net, histories["student"] = train_student(plan, make_student, teacher_net, seed=seed,
                                                      temperature=temperature, alpha=alpha, cache=cached, layout=layout)
    log(f"  training {student_arch} from scratch ({plan['total_steps']} steps, the labels only)")
    scratch_net, histories["scratch"] = train_scratch(plan, make_student, seed=seed)

    key = f"test_{wl.metric}"

    def measured(model: nn.Module, arch: str, name: str) -> dict[str, Any]:
        metrics = evaluate(wl, model)
        row: dict[str, Any] = {"arch": arch, key: metrics[wl.metric], "test_loss": metrics["loss"],
                               "parameters": parameters(model)}
        if name in histories:
            steps_, values = histories[name].series(f"val_{wl.metric}")
            row["curve"] = {"step": steps_, f"val_{wl.metric}": values}
        return row

    from ..store import versions

    summary: dict[str, Any] = {
        "workload": wl.name, "seed": seed, "metric": wl.metric, "metric_mode": wl.metric_mode,
        "per": layout.per, "shift": layout.shift if layout.per == "token" else None,
        "temperature": temperature, "alpha": alpha,
        "teacher": {**measured(teacher_net, teacher_arch, "teacher"),
                    "steps": None if teacher_model is not None else teacher_plan["total_steps"]},
        "student": measured(student_net, student_arch, "student"),
        "scratch": measured(scratch_net, student_arch, "scratch"),
        "steps": plan["total_steps"], "batch_size": plan["batch_size"], "optimizer": plan["optimizer"],
        "optimizer_source": plan["optimizer_source"], "lr": plan["hparams"]["lr"], "lr_source": plan["lr_source"],
        "schedule": plan["schedule"], "cached": cached,
    }
    summary["margin"] = summary["student"][key] - summary["scratch"][key]
    summary["wall_seconds"] = time.perf_counter() - started
    summary["versions"] = versions()
    result = DistillResult(summary, models={"teacher": teacher_net, "student": student_net, "scratch": scratch_net})
    if out is not None:
        work = Path(out)
        work.mkdir(parents=True, exist_ok=True)
        _write_json(work / "summary.json", summary)
        from .distill_report import render

        result.paths = {"summary": work / "summary.json", "report": render(work, summary)}
    return result


def train_student(plan: dict[str, Any], make_student, teacher: nn.Module, *, seed: int, temperature: float,
                  alpha: float, cache: bool = True, layout: Layout | None = None) -> tuple[nn.Module, Any]:
    """``(student, history)``: ``torch.manual_seed(seed)``, a fresh student, the
    recipe's optimizer over ``plan``'s budget, trained on the distillation loss
    (per example, or as ``layout`` says: :func:`~.logits.layout_of`)."""
    wl = plan["workload"]
    per, shift = (layout.per, layout.shift) if layout is not None else ("example", False)
    cached = cache and isinstance(wl.train, (tuple, list)) and per == "example"
    torch.manual_seed(seed)
    student = make_student()
    distiller = Distiller(student, teacher, cache_inputs=wl.train[0] if cached else None)
    opt, sched = new_optimizer(plan, distiller.student)
    train = distiller.index_split(wl.train[1]) if cached else None
    loss = DistillationLoss(temperature, alpha, per=per, shift=shift)
    fitted = fit(plan, distiller, opt, sched, seed=seed, train=train, loss_fn=loss)
    return student, fitted.trainer.history


def train_scratch(plan: dict[str, Any], make_student, *, seed: int) -> tuple[nn.Module, Any]:
    """``(student, history)``: the same seed's student, optimizer and batches on the workload's own loss."""
    torch.manual_seed(seed)
    student = make_student()
    opt, sched = new_optimizer(plan, student)
    return student, fit(plan, student, opt, sched, seed=seed).trainer.history


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
