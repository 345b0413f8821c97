"""Pruning masks reach the optimizer: pruned weights stay exactly zero through every
named optimizer's step (momentum, Adam moments, decoupled decay, fused kernels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn

from descentlab import optim
from descentlab.compress import keep_pruned, make_permanent, prune_magnitude, sparsity_of
from descentlab.compress.magnitude import prunable
from descentlab.workloads.models import ConvNet1d

X = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet1d(40, 10, channels=6)


def _steps(model: nn.Module, opt, n: int) -> None:
    for _ in range(n):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()


def _create(name: str, params, **kw):
    try:
        return optim.create(name, params, weight_decay=0.05, **kw)
    except TypeError:  # no weight decay in this optimizer
        return optim.create(name, params, **kw)


def _zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    """Where each prunable weight is zero now (after make_permanent: the plain weight)."""
    return {n: (m.weight == 0) for n, m in prunable(model)}


@pytest.mark.parametrize("name", optim.available())
def test_pruned_weights_stay_zero_through_every_optimizer(name):
    model = _model()
    opt = _create(name, model.parameters(), lr=1e-2 if name not in ("lars", "prodigy", "adadelta") else 1.0)
    _steps(model, opt, 3)  # momentum and moments built up before the prune
    prune_magnitude(model, 0.6, optimizer=opt)
    masks = {n: m.weight_mask.clone() for n, m in prunable(model)}
    kept_before = {n: m.weight_orig.detach().clone() for n, m in prunable(model)}
    _steps(model, opt, 5)
    for n, m in prunable(model):
        pruned = masks[n] == 0
        assert torch.all(m.weight_orig[pruned] == 0), f"{name}: {n} weight_orig revived"
        assert torch.all(m.weight[pruned] == 0)
        assert not torch.equal(m.weight_orig[~pruned], kept_before[n][~pruned]), f"{name}: {n} kept weights did not train"
        for key, value in opt.state[m.weight_orig].items():
            # (not SOAP's moments in its eigenbasis: their entries are not the weight's)
            if torch.is_tensor(value) and value.shape == m.weight_orig.shape and key not in opt.rotated_state_keys:
                # zero; Adamax's infinity norm has its floor eps there (max(β₂u, |g| + eps))
                assert torch.all(value[pruned].abs() <= 1e-7), f"{name}: state {key!r} of {n} is not zero where pruned"
    make_permanent(model)  # the re-parametrisation is gone: gradients reach the pruned entries now
    assert all(not hasattr(m, "weight_orig") for _, m in prunable(model))
    _steps(model, opt, 5)
    for n, m in prunable(model):
        assert torch.all(m.weight[masks[n] == 0] == 0), f"{name}: {n} revived after make_permanent"
    if hasattr(opt, "eval"):  # schedule-free evaluates at its average point: zero there too
        opt.eval()
        for n, m in prunable(model):
            assert torch.all(m.weight[masks[n] == 0] == 0)
        opt.train()
    assert abs(sparsity_of(model) - 0.6) < 0.01


def test_without_the_masks_momentum_revives_pruned_weights():
    """The failure keep_pruned exists for: torch.nn.utils.prune plus momentum, made permanent."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    _steps(model, opt, 3)
    tprune.global_unstructured([(m, "weight") for _, m in prunable(model)], tprune.L1Unstructured, amount=0.6)
    masks = {n: m.weight_mask.clone() for n, m in prunable(model)}
    orig = {n: m.weight_orig.detach().clone() for n, m in prunable(model)}
    _steps(model, opt, 2)
    drifted = any(not torch.equal(m.weight_orig[masks[n] == 0], orig[n][masks[n] == 0]) for n, m in prunable(model))
    assert drifted, "momentum should move the pruned entries of weight_orig"
    for _, m in prunable(model):
        tprune.remove(m, "weight")
    _steps(model, opt, 2)
    revived = sum(int((m.weight[masks[n] == 0] != 0).sum()) for n, m in prunable(model))
    assert revived > 0


@pytest.mark.parametrize("name, ref", [
    ("momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.05)),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.05)),
    ("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05)),
])
def test_masked_training_equals_torch_optim_with_the_same_masks(name, ref):
    ours, theirs = _model(), _model()
    lr = 0.05 if name == "momentum" else 0.01
    opt_a = optim.create(name, ours.parameters(), lr=lr, weight_decay=0.05)
    opt_b = ref(theirs.parameters())
    for model, opt in ((ours, opt_a), (theirs, opt_b)):
        _steps(model, opt, 3)
        prune_magnitude(model, 0.7, optimizer=opt)
        _steps(model, opt, 10)
        make_permanent(model)
        _steps(model, opt, 10)
    for (n, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{n}")


def test_global_and_layerwise_prune_the_fraction_asked():
    model = _model()
    per_layer = prune_magnitude(model, 0.5, scope="layer")
    assert all(abs(v - 0.5) < 0.02 for v in per_layer.values())
    model = _model()
    per_layer = prune_magnitude(model, 0.5)
    assert abs(sparsity_of(model) - 0.5) < 1e-3
    assert max(per_layer.values()) - min(per_layer.values()) > 0.05  # one threshold: layers differ
    # the global threshold: every pruned weight is no larger than every kept one
    pruned = torch.cat([m.weight_orig[m.weight_mask == 0].abs() for _, m in prunable(model)])
    kept = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for _, m in prunable(model)])
    assert pruned.max() == 0  # zeroed in the parameter itself
    weights = _model()
    flat = torch.cat([m.weight.detach().abs().flatten() for _, m in prunable(weights)])
    assert kept.min() >= flat.kthvalue(len(pruned)).values


def test_pruning_again_prunes_further_never_less():
    model = _model()
    prune_magnitude(model, 0.3)
    first = {n: m.weight_mask.clone() for n, m in prunable(model)}
    prune_magnitude(model, 0.6)
    assert abs(sparsity_of(model) - 0.6) < 1e-3
    for n, m in prunable(model):
        assert torch.all(m.weight_mask[first[n] == 0] == 0)  # what was pruned stays pruned
    with pytest.raises(ValueError, match="pruned already"):
        prune_magnitude(model, 0.4)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_sparsity_outside_0_1_is_refused(bad):
    model = _model()
    with pytest.raises(ValueError, match="sparsity"):
        prune_magnitude(model, bad)
    assert all(not hasattr(m, "weight_mask") for _, m in prunable(model))


def test_keep_pruned_with_explicit_masks():
    model = nn.Linear(4, 3)
    opt = optim.create("adam", model.parameters(), lr=0.1)
    mask = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    keep_pruned(opt, masks={model.weight: mask})
    assert torch.all(model.weight[mask == 0] == 0)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert torch.all(model.weight[mask == 0] == 0)
    with pytest.raises(ValueError, match="shape"):
        keep_pruned(opt, masks={model.weight: torch.ones(2, 2)})
