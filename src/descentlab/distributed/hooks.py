"""DDP communication hooks by name: how a ``DistributedDataParallel`` model's gradients travel.

``register(ddp_model, name)`` installs one of torch's own hooks
(``torch.distributed.algorithms.ddp_comm_hooks``) on the model; each one
replaces the all-reduce of a gradient bucket:

* ``"allreduce"``: ``default_hooks.allreduce_hook``, the bucket divided by the
  world size and all-reduced: numerically what DDP does without a hook, but
  through ``torch.distributed.all_reduce`` in Python, so ``traffic.count()``
  sees it (DDP's built-in all-reduce runs in C++).
* ``"fp16"`` / ``"bf16"``: ``fp16_compress_hook`` / ``bf16_compress_hook``,
  the bucket cast to 16 bits before the all-reduce and back after it: half the
  bytes, each gradient rounded to 11 (fp16) or 8 (bf16) significant bits.
  DDP refuses a hook named ``bf16_compress_hook`` unless CUDA with NCCL >= 2.10
  (or XPU) is present, a limit of NCCL; gloo all-reduces bfloat16, so on a gloo
  group the same torch function is registered under another name (``_bf16_on_gloo``).
* ``"powersgd"``: ``powerSGD_hook.powerSGD_hook`` (Vogels et al. 2019,
  "PowerSGD: Practical Low-Rank Gradient Compression for Distributed
  Optimization", arXiv:1905.13727): each gradient matrix M (n×m) is sent as
  rank-r factors P (n×r) and Q (m×r) found by one power iteration, so
  r·(n+m) numbers instead of n·m; vectors (biases) are all-reduced as they are.

PowerSGD's settings here (``POWERSGD``; any of them can be overridden with
keyword arguments of ``register``):

* ``matrix_approximation_rank=1``: the strongest compression; the paper's
  rank-2 results nearly match full SGD with error feedback, rank 1 is a little
  behind; raise it if accuracy suffers.
* ``start_powerSGD_iter=2``: plain all-reduce for the first 2 steps, the
  least torch allows with error feedback or warm start. torch suggests about
  10% of the run's steps for accuracy; 2 compresses almost every step of a
  short run.
* ``use_error_feedback=True`` and ``warm_start=True``: the paper's algorithm
  (the compression error is added to the next step's gradient; Q is reused
  from the previous step as the power iteration's start).
* ``min_compression_rate=2``: a matrix is compressed only where that at least
  halves its bytes (torch's default).
* ``random_seed=0``: the same initial Q on every process (it must agree).
"""

# No `from __future__ import annotations`: DDP checks a hook's annotations as objects.
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

#: The hook of each name.
HOOKS = {
    "allreduce": default_hooks.allreduce_hook,
    "bf16": default_hooks.bf16_compress_hook,
    "fp16": default_hooks.fp16_compress_hook,
    "powersgd": powerSGD_hook.powerSGD_hook,
}

#: PowerSGD's state arguments (see the module docstring for why).
POWERSGD = {
    "matrix_approximation_rank": 1,
    "start_powerSGD_iter": 2,
    "min_compression_rate": 2,
    "use_error_feedback": True,
    "warm_start": True,
    "random_seed": 0,
}


def _bf16_on_gloo(process_group: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """torch's ``bf16_compress_hook``, under a name DDP's NCCL-version check does not stop."""
    return default_hooks.bf16_compress_hook(process_group, bucket)


def register(ddp_model: DistributedDataParallel, name: str, *, process_group: Any = None, **powersgd: Any) -> Any:
    """Register the communication hook ``name`` on ``ddp_model``; returns the hook's state.

    ``process_group``: the group the gradients are averaged over (None: the
    default group). ``powersgd``: overrides of ``POWERSGD`` (only with
    ``"powersgd"``). The state returned is the ``PowerSGDState`` for
    ``"powersgd"`` (it holds the error-feedback buffers) and the process group
    otherwise. A DDP model takes one hook, once, before its first backward.
    """
    if name not in HOOKS:
        raise ValueError(f"unknown communication hook {name!r}: expected one of {', '.join(HOOKS)}")
    if not isinstance(ddp_model, DistributedDataParallel):
        raise TypeError(f"communication hooks go on a DistributedDataParallel model, got {type(ddp_model).__name__}")
    if name == "powersgd":
        unknown = sorted(set(powersgd) - set(POWERSGD) - {"orthogonalization_epsilon", "batch_tensors_with_same_shape"})
        if unknown:
            raise TypeError(f"unknown PowerSGD option(s) {unknown}; it takes {sorted(POWERSGD)}, "
                            "orthogonalization_epsilon and batch_tensors_with_same_shape")
        state = powerSGD_hook.PowerSGDState(process_group=process_group, **{**POWERSGD, **powersgd})
    elif powersgd:
        raise TypeError(f"hook {name!r} takes no options, got {sorted(powersgd)}")
    else:
        state = process_group
    hook = HOOKS[name]
    if name == "bf16" and dist.get_backend(process_group) == "gloo":
        hook = _bf16_on_gloo
    ddp_model.register_comm_hook(state, hook)
    return state
