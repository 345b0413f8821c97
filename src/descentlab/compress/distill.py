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

Per token (a language model's logits ``(N, L, V)``, token labels ``(N, L)``),
the same formula holds at every position that has a target, and both terms are
averaged over those tokens rather than over the examples::

    L = alpha * T**2 * mean_tokens KL(softmax(t_i / T) || softmax(s_i / T)) + (1 - alpha) * CE_tokens(s, y)

A causal LM's labels are its inputs, and the model shifts them itself
(Hugging Face's ``GPT2LMHeadModel(input_ids, labels=input_ids)``): position i
predicts token i + 1, so with ``shift=True`` the logits of positions
``0 .. L-2`` are compared with the labels ``1 .. L-1``, and the soft targets
are the teacher's logits at the same positions. Labels equal to
``ignore_index`` (-100, as Hugging Face pads them) mark positions without a
target: they count in neither term. ``CE_tokens`` is then exactly the causal
LM loss Hugging Face computes (``ForCausalLMLoss``), so the hard term is the
model's own loss.

Pieces:

* :func:`distillation_loss` — the formula per example, validated.
* :func:`token_distillation_loss`, :func:`token_cross_entropy` — per token.
* :class:`DistillationLoss` — the Trainer's ``loss_fn``: the formula on a
  :class:`Distiller`'s training outputs, plain cross entropy on a plain tensor
  (evaluation: ``val_loss`` is the student's cross entropy), per example or
  per token (``per=``).
* :class:`Distiller` — the student with its teacher beside it: in training,
  ``forward(...)`` gives both logits; in evaluation, the student's outputs alone.
  Logits are read as the Trainer reads them (:func:`~descentlab.train.batch.logits_of`:
  ``outputs.logits``, a dict's ``"logits"``, a tuple's first element, or the
  output itself), so a Hugging Face model's output works as a plain tensor does.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..train.batch import logits_of

#: default temperature and soft-target weight, chosen by measurement on mnist1d-cnn
#: (seed 0, the recipe's budget, student cnn-8: T in {2, 4} x alpha in {0.5, 0.9},
#: T=4, alpha=0.9 the best, +5.1 points over scratch; see :mod:`.distill_run`, docs/distill.md)
T_DEFAULT = 4.0
A_DEFAULT = 0.9
#: examples per teacher forward when its logits are cached
CACHE_BATCH = 1000
#: the label of a position without a target (Hugging Face's, and torch's cross entropy default)
IGNORE_INDEX = -100
#: what a loss averages over: per example (classification) or per token (a language model)
PER = ("example", "token")


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


def _token_shapes(student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor) -> None:
    if student_logits.ndim != 3:
        raise UsageError(f"per-token logits must have shape (N, L, V), got {tuple(student_logits.shape)}")
    if teacher_logits is not None and student_logits.shape != teacher_logits.shape:
        raise UsageError(f"student logits have shape {tuple(student_logits.shape)} but teacher logits "
                         f"{tuple(teacher_logits.shape)}: they must be equal")
    if tuple(labels.shape) != tuple(student_logits.shape[:2]):
        raise UsageError(f"per-token logits of shape {tuple(student_logits.shape)} need labels of shape "
                         f"{tuple(student_logits.shape[:2])}, got {tuple(labels.shape)}")


def _aligned(logits: Tensor, labels: Tensor, shift: bool) -> tuple[Tensor, Tensor]:
    """``(logits, labels)`` of the positions that predict a label, flattened to ``(T, V)`` and ``(T,)``:
    with ``shift``, position i's logits and label i + 1 (a causal LM's next token)."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)


def token_cross_entropy(logits: Tensor, labels: Tensor, *, shift: bool = True,
                        ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The mean cross entropy over the tokens that have a target: a language model's loss.

    ``logits``: ``(N, L, V)``; ``labels``: ``(N, L)``, ``ignore_index`` where
    there is no target. ``shift=True``: the labels are the inputs, position i
    predicts token i + 1, as Hugging Face's causal LMs compute their loss from
    ``labels`` (``ForCausalLMLoss``; half precision upcast to float32, as there); ``shift=False``: position i
    predicts label i (targets already shifted, or token classification).
    """
    _token_shapes(logits, None, labels)
    flat, y = _aligned(logits, labels, shift)
    if flat.dtype in (torch.float16, torch.bfloat16):  # upcast half precision, as Hugging Face does
        flat = flat.float()
    return F.cross_entropy(flat, y, ignore_index=ignore_index).to(logits.dtype)


def token_distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *,
                            temperature: float = T_DEFAULT, alpha: float = A_DEFAULT, shift: bool = True,
                            ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Per token: ``alpha·T²·mean_tokens KL(softmax(t_i/T) ‖ softmax(s_i/T)) + (1 − alpha)·CE_tokens(s, y)``.

    ``student_logits``, ``teacher_logits``: ``(N, L, V)``; ``labels``: ``(N, L)``.
    The KL divergence of each position is summed over the vocabulary and
    averaged over the positions whose (shifted, with ``shift``) label is not
    ``ignore_index`` — the tokens the hard term :func:`token_cross_entropy`
    averages over — so both terms are per token and alpha weighs like for like.
    The teacher's logits are detached.
    """
    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    _token_shapes(student_logits, teacher_logits, labels)
    loss = student_logits.new_zeros(())
    if alpha > 0:
        s, y = _aligned(student_logits, labels, shift)
        t, _ = _aligned(teacher_logits.detach().to(student_logits.dtype), labels, shift)
        keep = y != ignore_index
        log_p = F.log_softmax(s[keep] / temperature, dim=-1)
        log_q = F.log_softmax(t[keep] / temperature, dim=-1)
        kl = F.kl_div(log_p, log_q, log_target=True, reduction="sum") / keep.sum().clamp(min=1)
        loss = loss + alpha * temperature**2 * kl
    if alpha < 1:
        loss = loss + (1 - alpha) * token_cross_entropy(student_logits, labels, shift=shift, ignore_index=ignore_index)
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

    ``loss_fn(outputs, targets)``: the distillation loss when ``outputs`` is
    the pair ``(student_logits, teacher_logits)`` (training), and the plain cross
    entropy of the student when it is a tensor (evaluation, where the Distiller
    returns the student's logits: ``val_loss`` is the student's own loss).

    ``per="example"`` (default): :func:`distillation_loss` and
    ``F.cross_entropy``. ``per="token"``: :func:`token_distillation_loss` and
    :func:`token_cross_entropy`, with ``shift`` (a causal LM's labels are its
    inputs: True) and ``ignore_index``.
    """

    def __init__(self, temperature: float = T_DEFAULT, alpha: float = A_DEFAULT, *, per: str = "example",
                 shift: bool = True, ignore_index: int = IGNORE_INDEX):
        self.temperature, self.alpha = check_temperature(temperature), check_alpha(alpha)
        if per not in PER:
            raise UsageError(f"invalid per={per!r}: expected one of {', '.join(PER)}")
        self.per, self.shift, self.ignore_index = per, bool(shift), int(ignore_index)

    def __call__(self, outputs: Any, targets: Tensor) -> Tensor:
        token = self.per == "token"
        if isinstance(outputs, Tensor):
            if token:
                return token_cross_entropy(outputs, targets, shift=self.shift, ignore_index=self.ignore_index)
            return F.cross_entropy(outputs, targets)
        if isinstance(outputs, (tuple, list)) and len(outputs) == 2:
            student, teacher = outputs
            if token:
                return token_distillation_loss(student, teacher, targets, temperature=self.temperature,
                                               alpha=self.alpha, shift=self.shift, ignore_index=self.ignore_index)
            return distillation_loss(student, teacher, targets, temperature=self.temperature, alpha=self.alpha)
        raise TypeError(f"DistillationLoss expects a tensor of logits or the pair (student_logits, teacher_logits), "
                        f"got {type(outputs).__name__}")

    def __repr__(self) -> str:
        extra = f", per='token', shift={self.shift}, ignore_index={self.ignore_index}" if self.per == "token" else ""
        return f"DistillationLoss(temperature={self.temperature:g}, alpha={self.alpha:g}{extra})"


@torch.no_grad()
def teacher_logits(teacher: nn.Module, inputs: Tensor, batch_size: int = CACHE_BATCH) -> Tensor:
    """The teacher's logits of ``inputs``, in eval mode, in batches, on the teacher's device."""
    device = _device_of(teacher, inputs.device)
    was = teacher.training
    teacher.eval()
    try:
        return torch.cat([logits_of(teacher(inputs[i:i + batch_size].to(device)))
                          for i in range(0, len(inputs), batch_size)])
    finally:
        teacher.train(was)


def _first_tensor(inputs: Any) -> Tensor:
    """The first tensor in nested tuples, lists and dicts of inputs (to put the teacher on its device)."""
    if isinstance(inputs, Tensor):
        return inputs
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else ()
    for v in values:
        try:
            return _first_tensor(v)
        except LookupError:
            continue
    raise LookupError("no tensor among the inputs")


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    p = next(module.parameters(), None)
    if p is None:
        p = next(module.buffers(), None)
    return p.device if p is not None else default


class Distiller(nn.Module):
    """The student, with a frozen teacher beside it.

    * training mode: ``forward(x)`` returns :class:`Distilled` ``(student(x), teacher(x))``,
      the teacher run under ``torch.no_grad()``; the logits of each are read
      from its outputs as the Trainer reads them (``outputs.logits``, a dict's
      ``"logits"``, a tuple's first element); keyword inputs work too
      (``forward(**batch)``, the Trainer's call on a dict batch);
    * eval mode: ``forward(x)`` returns ``student(x)``, its outputs whole.

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

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Training: :class:`Distilled` (student's logits, teacher's logits) of the
        same inputs (positional, or keywords as a dict batch gives them); eval:
        the student's outputs as they are."""
        if not self.training:
            return self.student(*args, **kwargs)
        if self.cached:
            x = args[0] if len(args) == 1 and not kwargs else None
            if not isinstance(x, Tensor) or x.dtype not in (torch.int64, torch.int32) or x.ndim != 1:
                got = (f"inputs of dtype {x.dtype} and shape {tuple(x.shape)}" if isinstance(x, Tensor)
                       else f"{len(args)} positional and {len(kwargs)} keyword inputs")
                raise ValueError(
                    "a Distiller with cached teacher logits trains on indices into its cache_inputs: "
                    f"train on distiller.index_split(y), got {got}"
                )
            idx = x.to(self.cached_inputs.device)
            return Distilled(logits_of(self.student(self.cached_inputs[idx])), self.cached_logits[idx])
        self._teacher_to(_first_tensor((args, kwargs)).device)
        with torch.no_grad():
            soft = logits_of(self.teacher(*args, **kwargs))
        return Distilled(logits_of(self.student(*args, **kwargs)), soft)

    def _teacher_to(self, device: torch.device) -> None:
        if _device_of(self.teacher, device) != device:
            self.teacher.to(device)
        if self.teacher.training:  # someone switched it: a teacher is evaluated, never trained
            self.teacher.eval()

    def extra_repr(self) -> str:
        return f"teacher={type(self.teacher).__name__} (frozen, outside the module tree), cached={self.cached}"
