"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge
in a Neural Network", arXiv:1503.02531): a student learns from a teacher's soft
targets as well as from the labels.

The loss, for student logits ``s``, teacher logits ``t``, labels ``y``,
temperature ``T`` and weight ``alpha`` of the soft targets::

    L = alpha * T**2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

with the KL divergence summed over the classes and averaged over the batch.

* **Why T²**: the gradient of the soft term with respect to a student logit is
  ``(softmax(s/T) - softmax(t/T)) / T``, and for T large against the logits'
  spread ``softmax(z/T) ≈ (1 + z/T) / C``, so the gradient is about
  ``(s - t) / (C·T²)``: it shrinks as 1/T². Multiplying by T² keeps the soft
  targets' share of the gradient the same whatever T is, so changing T does not
  silently re-weight soft against hard targets (the paper, section 2).
* **Why batchmean**: the KL divergence of one example is a sum over its classes;
  ``F.kl_div(..., reduction="batchmean")`` sums and divides by the batch size N,
  which is the divergence per example, the mathematical definition. torch's
  ``KLDivLoss(reduction="mean")`` (its default ``"mean"``) divides by N·C, the
  number of elements: the soft term comes out C times too small (10× on a
  10-class problem) and alpha no longer means what it says. torch warns about
  this; several distillation codes have the wrong scale because of it.

Pieces:

* :func:`distillation_loss` — the formula, validated.
* :class:`DistillationLoss` — the Trainer's ``loss_fn``: the formula on a
  :class:`Distiller`'s training outputs, plain cross entropy on a plain tensor
  (evaluation: ``val_loss`` is the student's cross entropy).
* :class:`Distiller` — the student with its teacher beside it: in training,
  ``forward(x)`` gives both logits; in evaluation, the student's alone.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError

#: default temperature and soft-target weight, chosen by measurement on mnist1d-cnn
#: (seed 0, the recipe's budget, student cnn-8: T in {2, 4} x alpha in {0.5, 0.9},
#: T=4, alpha=0.9 the best, +5.1 points over scratch; see :mod:`.distill_run`, docs/distill.md)
T_DEFAULT = 4.0
A_DEFAULT = 0.9
#: examples per teacher forward when its logits are cached
CACHE_BATCH = 1000


def check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise UsageError(f"invalid temperature={temperature!r}: expected a finite number > 0")
    return float(temperature)


def check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise UsageError(f"invalid alpha={alpha!r}: expected a number in [0, 1] (the weight of the soft targets)")
    return float(alpha)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *,
                      temperature: float = T_DEFAULT, alpha: float = A_DEFAULT) -> Tensor:
    """``alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha)·CE(s, y)`` (module docstring).

    ``student_logits`` and ``teacher_logits``: ``(N, C)`` (or ``(N, C, ...)``,
    classes on dim 1, as ``F.cross_entropy`` takes them); ``targets``: class
    indices. ``alpha=1``: soft targets only; ``alpha=0``: the labels only.
    The teacher's logits are detached: no gradient reaches the teacher.
    """
    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    if student_logits.shape != teacher_logits.shape:
        raise UsageError(f"student logits have shape {tuple(student_logits.shape)} but teacher logits "
                         f"{tuple(teacher_logits.shape)}: they must be equal")
    loss = student_logits.new_zeros(())
    if alpha > 0:
        log_p = F.log_softmax(student_logits / temperature, dim=1)
        log_q = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / temperature, dim=1)
        soft = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
        loss = loss + alpha * temperature**2 * soft
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, targets)
    return loss


class Distilled(NamedTuple):
    """A :class:`Distiller`'s training output: the pair ``(student, teacher)`` of logits."""

    student: Tensor
    teacher: Tensor

    @property
    def logits(self) -> Distilled:
        # The Trainer hands a loss_fn ``logits_of(outputs)``: ``outputs.logits`` when
        # there is one, else a tuple's first element. The pair is the loss's input,
        # so it names itself as the logits and reaches DistillationLoss whole.
        return self


class DistillationLoss:
    """The Trainer's ``loss_fn`` for a :class:`Distiller`.

    ``loss_fn(outputs, targets)``: :func:`distillation_loss` when ``outputs`` is
    the pair ``(student_logits, teacher_logits)`` (training), and the plain cross
    entropy of the student when it is a tensor (evaluation, where the Distiller
    returns the student's logits: ``val_loss`` is the student's own loss).
    """

    def __init__(self, temperature: float = T_DEFAULT, alpha: float = A_DEFAULT):
        self.temperature, self.alpha = check_temperature(temperature), check_alpha(alpha)

    def __call__(self, outputs: Any, targets: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            return F.cross_entropy(outputs, targets)
        if isinstance(outputs, (tuple, list)) and len(outputs) == 2:
            student, teacher = outputs
            return distillation_loss(student, teacher, targets, temperature=self.temperature, alpha=self.alpha)
        raise TypeError(f"DistillationLoss expects a tensor of logits or the pair (student_logits, teacher_logits), "
                        f"got {type(outputs).__name__}")

    def __repr__(self) -> str:
        return f"DistillationLoss(temperature={self.temperature:g}, alpha={self.alpha:g})"


@torch.no_grad()
def teacher_logits(teacher: nn.Module, inputs: Tensor, batch_size: int = CACHE_BATCH) -> Tensor:
    """The teacher's logits of ``inputs``, in eval mode, in batches, on the teacher's device."""
    device = _device_of(teacher, inputs.device)
    was = teacher.training
    teacher.eval()
    try:
        return torch.cat([teacher(inputs[i:i + batch_size].to(device)) for i in range(0, len(inputs), batch_size)])
    finally:
        teacher.train(was)


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    p = next(module.parameters(), None)
    if p is None:
        p = next(module.buffers(), None)
    return p.device if p is not None else default


class Distiller(nn.Module):
    """The student, with a frozen teacher beside it.

    * training mode: ``forward(x)`` returns :class:`Distilled` ``(student(x), teacher(x))``,
      the teacher run under ``torch.no_grad()``;
    * eval mode: ``forward(x)`` returns ``student(x)``.

    The teacher is always in eval mode (``train()`` does not change it: dropout
    off, BatchNorm on its running statistics), its parameters have
    ``requires_grad=False``, and it is kept **outside the module tree**: not a
    submodule, so ``distiller.parameters()``, ``state_dict()`` and
    ``named_modules()`` are the student's alone. That way an optimizer built
    from the Distiller, a checkpoint of it, and a pruning callback that walks
    the Trainer's model (:class:`~.gradual.GradualPruning` in prune-then-distill)
    see only the student: nothing can update, save or prune the teacher by
    accident. Build the optimizer from ``distiller.student`` (or the Distiller:
    the same parameters). Since ``Distiller.to(device)`` does not reach the
    teacher, the teacher follows the inputs: it is moved to their device on
    the first forward that needs it.

    Caching (``cache_inputs``: the training split's inputs, an in-memory
    tensor): the teacher's logits of every training input are computed once,
    here. Train then on :meth:`index_split` ``(arange(N), y)``: in training
    mode ``forward(idx)`` takes ``cache_inputs[idx]`` and the cached logits
    ``[idx]``, so the teacher costs nothing per step, and since the Trainer
    shuffles ``(arange(N), y)`` exactly as it shuffles ``(x, y)`` (the same
    seeded permutations), the student sees the same batches as without the
    cache. The cache (inputs and logits) is held as non-persistent buffers: it
    moves with ``.to()`` and stays out of the ``state_dict``.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, *, cache_inputs: Tensor | None = None,
                 cache_batch_size: int = CACHE_BATCH):
        super().__init__()
        if not isinstance(student, nn.Module) or not isinstance(teacher, nn.Module):
            raise TypeError(f"Distiller needs two nn.Modules, got student={type(student).__name__}, "
                            f"teacher={type(teacher).__name__}")
        if student is teacher:
            raise ValueError("the student and the teacher are the same module: distil into a separate model")
        self.student = student
        teacher.eval()
        teacher.requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not registered: see the class docstring
        if cache_inputs is not None:
            if not isinstance(cache_inputs, Tensor):
                raise TypeError(f"cache_inputs must be a tensor of the training inputs, got {type(cache_inputs).__name__}")
            logits = teacher_logits(teacher, cache_inputs, cache_batch_size)
            self.register_buffer("cached_inputs", cache_inputs, persistent=False)
            self.register_buffer("cached_logits", logits.to(cache_inputs.device), persistent=False)
        else:
            self.cached_inputs = self.cached_logits = None

    @property
    def cached(self) -> bool:
        return self.cached_logits is not None

    def index_split(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The training split to train a caching Distiller on: ``(arange(N), targets)``."""
        if not self.cached:
            raise ValueError("index_split() is for a Distiller built with cache_inputs=")
        if len(targets) != len(self.cached_inputs):
            raise ValueError(f"{len(targets)} targets for {len(self.cached_inputs)} cached inputs")
        return torch.arange(len(targets)), targets

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # whatever the student's mode
        return self

    def forward(self, x: Tensor) -> Tensor | Distilled:
        if not self.training:
            return self.student(x)
        if self.cached:
            if x.dtype not in (torch.int64, torch.int32) or x.ndim != 1:
                raise ValueError(
                    "a Distiller with cached teacher logits trains on indices into its cache_inputs: "
                    f"train on distiller.index_split(y), got inputs of dtype {x.dtype} and shape {tuple(x.shape)}"
                )
            idx = x.to(self.cached_inputs.device)
            return Distilled(self.student(self.cached_inputs[idx]), self.cached_logits[idx])
        self._teacher_to(x.device)
        with torch.no_grad():
            soft = self.teacher(x)
        return Distilled(self.student(x), soft)

    def _teacher_to(self, device: torch.device) -> None:
        if _device_of(self.teacher, device) != device:
            self.teacher.to(device)
        if self.teacher.training:  # someone switched it: a teacher is evaluated, never trained
            self.teacher.eval()

    def extra_repr(self) -> str:
        return f"teacher={type(self.teacher).__name__} (frozen, outside the module tree), cached={self.cached}"
