"""Small deterministic problems shared by the optimizer tests."""

from __future__ import annotations

import torch

from descentlab import optim

ANY_SHAPES = [(6, 5), (6,), (3, 6), (3,)]
MATRIX_SHAPES = [(6, 5), (4, 6), (3, 4)]
STEPS = 100


def shapes_for(ref) -> list[tuple[int, ...]]:
    return MATRIX_SHAPES if ref.params == "matrix" else ANY_SHAPES


def make_params(shapes, dtype=torch.float32, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]


def make_grads(shapes, steps=STEPS, dtype=torch.float32, seed=1) -> list[list[torch.Tensor]]:
    """Random gradients, the same for every implementation, so that the update
    rules are compared and not the loss landscape."""
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]
        for _ in range(steps)
    ]


def groups(params, two_groups: bool, lr: float | None) -> list[dict]:
    """One group, or two with different learning rates (the second at lr/2)."""
    if not two_groups:
        return [{"params": params}]
    return [{"params": params[:2]}, {"params": params[2:], "lr": lr * 0.5}]


def run(opt, params, grad_seq, scheduler=None, start=0, stop=None) -> None:
    for grads in grad_seq[start:stop]:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours − ref| / max |ref|: the relative difference of a tensor (0 when empty)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if ref.numel() == 0:
        return 0.0
    scale = ref.abs().max().clamp_min(torch.finfo(ref.dtype).tiny)
    return float((ours - ref).abs().max() / scale)


def default_lr(name: str) -> float:
    return optim.get(name).defaults["lr"]
