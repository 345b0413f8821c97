"""Fused optimizer steps, and when they are used.

An optimizer step is memory-bound: the fastest step reads each parameter,
gradient and state element once and writes each once. The readable chain of
transforms makes one pass per operation instead. Every named optimizer has a
step in :data:`KERNELS` that makes as few passes as its algorithm allows:

* torch's own fused kernels where torch has the exact algorithm and rounds
  close enough to the chain (adam, amsgrad, sgd, momentum, nesterov,
  adagrad on CPU and CUDA; adamw on CUDA): ``torch_kernels.py``;
* C++ kernels of ours, built once with torch's extension builder and run with
  ``at::parallel_for`` (CPU; ``cpu_kernels.py``, ``build.py`` and ``csrc/``):
  one pass for adamw (torch's CPU kernel drifts 5e-6 from the chain in 100
  steps, see ``cpu_kernels.adamw``), lion, rmsprop, adadelta, adamax, nadam,
  radam, adamw_schedulefree, and adam/amsgrad when the universal
  ``l1``/``l2``/``decoupled_decay`` are used, which torch's kernels do not
  take (``csrc/one_pass.cpp``); two passes where sums over a whole tensor or
  the whole group must come first: lamb and lars (per-tensor norms, then the
  update, tensor by tensor) and prodigy (group sums for its step size d, then
  the update) in ``csrc/multi_pass.cpp``, adafactor (factored statistics and
  norms, then the update, tensor by tensor) in ``csrc/adafactor.cpp``; and
  for muon a momentum pass that writes the bfloat16 copy Newton–Schulz starts
  from and an update pass around torch's matmuls, one matrix at a time, with
  its AdamW groups on the Adam kernel (``csrc/muon.cpp``). The kernels of adam,
  amsgrad, adamw, lion, ademamix, adopt and mars also take ``cautious=True``:
  a pass that counts where the direction agrees with the gradient, then the
  masked step (``cpu_kernels._cautiously``).

On CUDA only torch's kernels exist; the others run the chain (its foreach
path): see docs/optimizers.md, "Fused kernels", for why there is no Triton or
torch.compile path yet.

``optim.create`` attaches a :class:`FusedStep` to every optimizer that has a
kernel; the param-group option ``fused`` decides (see docs/optimizers.md,
"Fused kernels"):

* ``None`` (default): the fused step when the group's ``foreach`` is also
  ``None`` (an explicit ``foreach`` asks for that chain path: ``False`` is
  the readable ground truth the tests compare with, ``True`` the multi-tensor
  path) and every parameter, gradient and state tensor is a contiguous
  float32/float64 tensor on a device the kernel supports, and no option the
  kernel lacks is in use; otherwise the chain, silently.
* ``True``: the fused step or an error: ValueError at construction (and
  RuntimeError at a step) naming what prevents it.
* ``False``: always the chain.

On DTensor parameters (FSDP2) the steps get the local shards (see
``optim/sharded.py``); every kernel serves them but lamb's, lars's and
adafactor's, which sum over whole tensors inside one op (``FusedKernel.shards``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import sharded
from . import cpu_kernels, torch_kernels
from .build import FusedUnavailable, available as cpp_available

__all__ = ["KERNELS", "FusedKernel", "FusedStep", "FusedUnavailable", "fused_step_for", "mechanism", "names"]

DTYPES = (torch.float32, torch.float64)
REGULARIZATION = ("l1", "l2", "decoupled_decay")

StepFn = Callable[[list[Tensor], list[Tensor], list[dict], dict], None]
Check = Callable[[Mapping[str, Any], "list[dict] | None"], "str | None"]


def _amsgrad_state(group: Mapping[str, Any], states: list[dict] | None) -> str | None:
    if states is not None and group.get("amsgrad") and any("max_exp_avg_sq" not in s for s in states):
        return "amsgrad was switched on after the state was created (there is no max_exp_avg_sq)"
    return None


def _muon_amsgrad_state(group: Mapping[str, Any], states: list[dict] | None) -> str | None:
    if group.get("use_muon") is not False and group.get("split") not in (None, 1):
        # The kernel orthogonalizes whole matrices; the chain cuts them into blocks.
        return "has no fused kernel for split (the chain orthogonalizes each block)"
    if group.get("use_muon") is False and group.get("adamw_amsgrad"):
        return _amsgrad_state({"amsgrad": True}, states)
    return None


def _mars_state(group: Mapping[str, Any], states: list[dict] | None) -> str | None:
    if group.get("mars_type") == "lion" and group.get("use_mars", True):
        # sign(m) turns the last-bit difference of the kernel's norm (summed in double)
        # from torch's float vector_norm into steps of 2·lr wherever m is near 0.
        return "has no fused kernel for mars_type='lion' (the sign of m amplifies a last-bit difference)"
    if states is not None and group.get("ams_bound") and any("max_exp_avg_sq" not in s for s in states):
        return "ams_bound was switched on after the state was created (there is no max_exp_avg_sq)"
    return None


def _train_mode(group: Mapping[str, Any], states: list[dict] | None) -> str | None:
    # A step in eval mode is an error; the chain raises it with the full explanation.
    return None if group.get("train_mode", True) else "the group is in eval mode"


@dataclass(frozen=True)
class FusedKernel:
    """The fused steps of one named optimizer, by device.

    Each step is ``step(params, grads, states, group)``, doing the whole update
    in place, state in the chain's keys and format.

    Attributes:
        cpu: the step on CPU tensors.
        cpu_regularized: the CPU step when a universal ``l1``, ``l2`` or
            ``decoupled_decay`` is non-zero (torch's kernels do not take them;
            ours do). None: the chain does such steps.
        cuda: the step on CUDA tensors (torch's kernels), or None.
        check: group options or states no step covers (returns why, or None).
        l2_is_weight_decay: the optimizer's own ``weight_decay`` is coupled L2
            (sgd, adam, adagrad), so a universal ``l2`` alone is the same
            arithmetic and the plain steps serve it (the chain adds ``l2·p``
            and then ``0·p``: bit for bit ``weight_decay=l2``).
        shards: the steps also serve local shards of DTensor parameters (FSDP2):
            they are elementwise, or take the collectives of ``optim/sharded.py``
            between their passes (prodigy, muon). False where one C++ op sums
            over whole tensors (lamb, lars, adafactor): the chain steps those.
        cautious: the steps take ``cautious=True`` (the mask of
            ``transforms/cautious.py``); otherwise such groups use the chain.
        cpu_bf16: a CPU step on bfloat16 state (``state_dtype="bfloat16"``),
            ``step(params, grads, states, group, seeds)``, equal to widening the
            state, ``cpu`` and ``lowprec.narrow_``; None: those three.
    """

    cpu: StepFn
    cpu_regularized: StepFn | None = None
    cuda: StepFn | None = None
    check: Check | None = None
    l2_is_weight_decay: bool = False
    shards: bool = True
    cautious: bool = False
    cpu_bf16: Callable[..., None] | None = None

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self.cuda is not None else ("cpu",)


def mechanism(step: StepFn) -> str:
    """``"torch"`` for torch's ``_fused_*`` kernels, ``"cpp"`` for ours (``csrc/``)."""
    return "cpp" if step.__module__ == cpu_kernels.__name__ else "torch"


def _torch(step: StepFn, check: Check | None = None, regularized: StepFn | None = None,
           cautious: bool = False) -> FusedKernel:
    return FusedKernel(cpu=step, cpu_regularized=regularized, cuda=step, check=check, l2_is_weight_decay=True,
                       cautious=cautious)


def _cpp(step: StepFn, check: Check | None = None, shards: bool = True, cautious: bool = False,
         bf16: bool = False) -> FusedKernel:
    """Our C++ step; ``bf16``: it also steps bfloat16 state, given the rounding seeds."""
    return FusedKernel(cpu=step, cpu_regularized=step, check=check, shards=shards, cautious=cautious,
                       cpu_bf16=step if bf16 else None)


#: The lookup table ``optim.create`` consults: optimizer name -> kernels.
KERNELS: dict[str, FusedKernel] = {
    "sgd": _torch(torch_kernels.sgd),
    "momentum": _torch(torch_kernels.sgd),
    "nesterov": _torch(torch_kernels.sgd),
    "adam": _torch(torch_kernels.adam, _amsgrad_state, regularized=cpu_kernels.adam, cautious=True),
    "amsgrad": _torch(torch_kernels.adam, _amsgrad_state, regularized=cpu_kernels.adam, cautious=True),
    # torch's _fused_adamw_ drifts from the chain (see cpu_kernels.adamw); ours on CPU.
    "adamw": FusedKernel(cpu=cpu_kernels.adamw, cpu_regularized=cpu_kernels.adamw,
                         cuda=torch_kernels.adamw, check=_amsgrad_state, cautious=True,
                         cpu_bf16=cpu_kernels.adamw_bf16),
    "adagrad": _torch(torch_kernels.adagrad),
    "rmsprop": _cpp(cpu_kernels.rmsprop),
    "adadelta": _cpp(cpu_kernels.adadelta),
    "adamax": _cpp(cpu_kernels.adamax),
    "nadam": _cpp(cpu_kernels.nadam),
    "radam": _cpp(cpu_kernels.radam),
    "lion": _cpp(cpu_kernels.lion, cautious=True, bf16=True),
    "lamb": _cpp(cpu_kernels.lamb, _amsgrad_state, shards=False),
    "lars": _cpp(cpu_kernels.lars, shards=False),
    "adamw_schedulefree": _cpp(cpu_kernels.adamw_schedulefree, _train_mode),
    "prodigy": _cpp(cpu_kernels.prodigy),
    "adafactor": _cpp(cpu_kernels.adafactor, shards=False),
    "muon": _cpp(cpu_kernels.muon, _muon_amsgrad_state),
    "ademamix": _cpp(cpu_kernels.ademamix, cautious=True, bf16=True),
    "adopt": _cpp(cpu_kernels.adopt, cautious=True, bf16=True),
    "mars": _cpp(cpu_kernels.mars, _mars_state, cautious=True, bf16=True),
}


#: The named optimizers without a fused kernel, and why: their step is dominated by
#: matrix products (eigen/inverse-root preconditioners, Newton–Schulz, Kronecker
#: factors), which torch already runs in BLAS; an elementwise kernel would save a few
#: percent of a step that is 10–200x adamw's (BENCHMARKS.md, "The optimizers of
#: issue 33"). The chain is their fast path; ``fused=True`` on them is an error.
UNFUSED: dict[str, str] = {
    "normuon": "Newton–Schulz matmuls dominate; the per-row statistics are one foreach op",
    "soap": "an Adam step in the eigenbasis of GG^T: four matmuls per matrix per step",
    "shampoo": "inverse p-th roots every k steps and two matmuls per block per step",
    "kron": "Kronecker-factor updates (triangular solves and matmuls) on every step",
}


def names() -> list[str]:
    """The optimizers that have a fused kernel."""
    return list(KERNELS)


def _describe(t: Tensor) -> str:
    return f"{t.dtype} tensor of shape {tuple(t.shape)} on {t.device}"


def _on(t: Tensor, kind: str, index: int) -> bool:
    """Whether ``t`` is on the device (type ``kind``, CUDA ``index``); cheaper than ``t.device``."""
    if kind == "cpu":
        return t.is_cpu
    if kind == "cuda":
        return t.is_cuda and t.get_device() == index
    return t.device.type == kind


def _tensor_problem(tensors: list[Tensor], devices: tuple[str, ...]) -> str | None:
    """Why these tensors cannot go to a kernel for ``devices`` (None if they can).

    Runs at every step: a fast pass of cheap checks, the message only on failure.
    """
    if not tensors:
        return None
    where = " or ".join(d.upper() for d in devices)
    first = tensors[0]
    kind, index = first.device.type, first.get_device()
    for t in tensors:
        if t.dtype in DTYPES and _on(t, kind, index) and t.is_contiguous() and not t.is_sparse:
            continue
        if not _on(t, kind, index):
            return f"needs all its tensors on one device, got {first.device} and {t.device}"
        if t.dtype in DTYPES and not t.is_sparse:
            return f"needs contiguous float32/float64 {where} tensors, got a non-contiguous {_describe(t)}"
        return f"needs contiguous float32/float64 {where} tensors, got a {_describe(t)}"
    if kind not in devices:
        return f"needs contiguous float32/float64 {where} tensors, got a {_describe(first)}"
    return None


_NO_SHARDS = (
    "has no fused kernel for sharded (DTensor) parameters: its C++ kernel sums over whole tensors "
    "in one op; leave fused unset to use the chain, which all-reduces those sums"
)


class FusedStep:
    """The ``fused_step`` a named optimizer's :class:`ChainOptimizer` calls.

    ``__call__`` returns True when it did the step, False to let the chain do
    it; with ``fused=True`` it raises instead of declining.
    """

    def __init__(self, name: str, kernel: FusedKernel):
        self.name = name
        self.kernel = kernel
        self._warned = False

    def __repr__(self) -> str:
        return f"FusedStep({self.name!r}, devices={self.kernel.devices()})"

    # -- which step, or why none ------------------------------------------------

    def select(self, group: Mapping[str, Any], device: torch.device) -> tuple[StepFn | None, str | None]:
        """The step for this group's options on ``device``, or (None, why not)."""
        if group.get("foreach") is True:
            return None, "cannot be combined with foreach=True (pick one path)"
        if group.get("cautious") and not self.kernel.cautious:
            return None, "has no fused kernel that takes cautious=True; leave fused unset to use the chain"
        regularized = [k for k in REGULARIZATION if group.get(k, 0) != 0]
        if regularized == ["l2"] and self.kernel.l2_is_weight_decay and group.get("weight_decay", 0) == 0:
            regularized = []  # the plain kernels take l2 as their weight_decay
        if group.get("cautious"):
            regularized.append("cautious=True")  # ours take it (cpu_regularized); torch's do not
        if device.type == "cuda":
            step = None if regularized else self.kernel.cuda
        elif device.type == "cpu":
            step = self.kernel.cpu_regularized if regularized else self.kernel.cpu
        else:
            step = None
        if step is None and regularized:
            return None, (
                f"has no fused kernel on {device.type} that takes {', '.join(regularized)}; "
                "leave fused unset to use the chain"
            )
        if step is None:
            return None, f"has no fused kernel for {device.type} tensors"
        return step, None

    def why_not(self, group: Mapping[str, Any]) -> str | None:
        """Why ``fused=True`` is impossible for this param group (None if it is possible).

        Checked when the group is added; builds the C++ kernels if needed.
        """
        params = [p[1] if isinstance(p, tuple) else p for p in group["params"]]
        if not self.kernel.shards and sharded.is_sharded(params):
            return _NO_SHARDS
        return self._problem([sharded.local(p) for p in params], None, None, group)[1]

    def _problem(self, params, grads, states, group) -> tuple[StepFn | None, str | None]:
        """The step to run, or (None, why not). State tensors are checked by the kernels
        themselves (the chain and load_state_dict give them the parameter's dtype and device)."""
        if states is not None and not self.kernel.shards and any(sharded.sharding(s) for s in states):
            return None, _NO_SHARDS
        problem = _tensor_problem(params, self.kernel.devices())
        if problem:
            return None, problem
        if not params:
            return None, None
        first = params[0]
        step, problem = self.select(group, first.device)
        problem = problem or (self.kernel.check(group, states) if self.kernel.check else None)
        if problem:
            return None, problem
        if grads is not None:
            kind, index = ("cpu", -1) if first.is_cpu else ("cuda", first.get_device())
            for p, g in zip(params, grads):
                if g.dtype != p.dtype or not _on(g, kind, index):
                    return None, f"got a {_describe(g)} as the gradient of a {_describe(p)}"
        if mechanism(step) == "cpp":
            problem = cpp_available()
        return (None, problem) if problem else (step, None)

    # -- the step ------------------------------------------------------------------

    def __call__(self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> bool:
        mode = group.get("fused")
        if mode is False or (mode is None and group.get("foreach") is not None):
            return False
        step, problem = self._problem(params, grads, states, group)
        if step is None:
            if mode:
                raise RuntimeError(f"fused=True: {self.name} {problem}")
            if problem is not None and problem == cpp_available() and not self._warned:
                self._warned = True
                warnings.warn(f"{self.name}: using the unfused chain: {problem}", RuntimeWarning, stacklevel=3)
            return False
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]
        step(params, grads, states, group)
        return True


def _bf16_ready(params, grads, states, group) -> bool:
    """Whether a direct bfloat16-state step can take these tensors: float32 contiguous CPU
    parameters and gradients, the state's elementwise tensors bfloat16 and contiguous."""
    for p, g, state in zip(params, grads, states):
        if not (p.is_cpu and p.dtype == torch.float32 and p.is_contiguous() and g.dtype == torch.float32
                and g.is_cpu and g.is_contiguous() and not g.is_sparse and g.shape == p.shape):
            return False
        for value in state.values():
            if isinstance(value, Tensor) and value.shape == p.shape and value.ndim > 0 and (
                    value.dtype != torch.bfloat16 or not value.is_contiguous() or not value.is_cpu):
                return False
    return True


def low_precision_step(fused: FusedStep | None, params: list[Tensor], grads: list[Tensor], states: list[dict],
                       group: dict, seeds: "Callable[[], list[dict[str, int]]]") -> bool:
    """Do a ``state_dtype="bfloat16"`` step with the kernel that reads and writes the
    bfloat16 state directly, where there is one and it applies (True); otherwise nothing
    (False: the caller widens the state and steps as usual, errors included)."""
    kernel = getattr(fused, "kernel", None)  # (a test may wrap the fused step)
    if kernel is None or kernel.cpu_bf16 is None:
        return False
    mode = group.get("fused")
    if mode is False or (mode is None and group.get("foreach") is not None) or group.get("cautious"):
        return False
    if not params or fused._problem(params, grads, None, group)[0] is not kernel.cpu:
        return False  # the float step would not be this kernel's CPU step
    if (kernel.check and kernel.check(group, states)) or not _bf16_ready(params, grads, states, group):
        return False
    kernel.cpu_bf16(params, grads, states, group, seeds())
    return True


def fused_step_for(name: str) -> FusedStep | None:
    """The fused step of a named optimizer, or None when it has no kernel."""
    kernel = KERNELS.get(name)
    return None if kernel is None else FusedStep(name, kernel)
