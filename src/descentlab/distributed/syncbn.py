"""Synchronized BatchNorm (``train --sync-batchnorm``): batch statistics over the
global batch, so that N processes normalize as one process does.

Without it, each process normalizes its own part of the batch with that part's
mean and variance, as torch's DDP does (docs/distributed.md); the running
statistics then differ between processes (DDP broadcasts rank 0's at every
forward; FSDP and DiLoCo keep each rank's own, and checkpoints keep rank 0's).

Under NCCL (CUDA) this is torch's own :class:`torch.nn.SyncBatchNorm`. torch's
refuses CPU tensors ("SyncBatchNorm expected input tensor to be on GPU", and DDP
refuses it in a CPU module), so under gloo the same statistics are computed by
:class:`SyncBatchNorm` here from one all-reduce of the per-channel sums: with
``n`` elements per channel on each process,

    mean = Σ_r Σx / Σ_r n,   var = Σ_r Σx² / Σ_r n - mean²   (biased, for normalizing),

and the running variance takes the unbiased ``var · N/(N-1)``, as BatchNorm
does (Ioffe & Szegedy 2015). The all-reduce is autograd's
(``torch.distributed.nn.functional.all_reduce``), whose backward sums the
gradients of the statistics over the processes, so the gradient is the
global batch's too.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class SyncBatchNorm(_BatchNorm):
    """BatchNorm of any dimension whose training statistics are the process group's."""

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not self._syncs():
            return super().forward(input)
        self._check_input_dim(input)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, input.dim())]
        count = torch.tensor(float(input.numel() // input.size(1)), dtype=input.dtype)
        local = torch.cat([input.sum(dims), (input * input).sum(dims), count.view(1)])
        total = dist.nn.functional.all_reduce(local, group=self.process_group or dist.group.WORLD)
        channels = input.size(1)
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * (n / (n - 1)).clamp_min(0) if float(n) > 1 else var.detach()
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def _syncs(self) -> bool:
        """Batch statistics are taken (training, or no running statistics) in a group of many."""
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if not (batch_stats and dist.is_available() and dist.is_initialized()):
            return False
        return dist.get_world_size(self.process_group or dist.group.WORLD) > 1


def convert(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm synchronized: torch's SyncBatchNorm under
    NCCL, :class:`SyncBatchNorm` otherwise (gloo, the CPU), keeping the same
    Parameter objects and buffers (an optimizer built before still steps them).
    Returns the module (a new one only when ``module`` itself is a BatchNorm)."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, SyncBatchNorm)):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        sync.running_mean, sync.running_var = module.running_mean, module.running_var
        sync.num_batches_tracked = module.num_batches_tracked
        sync.training = module.training
        return sync
    for name, child in module.named_children():
        new = _convert(child)
        if new is not child:
            setattr(module, name, new)
    return module


def count(module: nn.Module) -> int:
    """How many BatchNorm layers ``module`` has."""
    return sum(isinstance(m, _BatchNorm) for m in module.modules())
