"""Shampoo beyond the reference matrix: N-D (convolution) tensors, resuming
between root updates, Adam grafting, the block plan, the amortized root
updates, and FSDP2 shards.

The matrix (test_reference_matrix.py, refs/shampoo.py) compares 2-D and 1-D
tensors with pytorch_optimizer.ScalableShampoo; here the same reference on 3-D
and 4-D tensors, whose preconditioners contract one dimension at a time.
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from descentlab import optim
from descentlab.optim.chain import walk
from descentlab.optim.transforms import shampoo as S

from .problems import make_grads, make_params, rel_diff, run
from .refs.shampoo import _shampoo

ND_SHAPES = [(4, 3, 3, 3), (5, 4, 6), (2, 3, 4, 5), (7,)]

ND_CASES = {
    # interpreted shapes with leading 1s, blocks of 3, AdaGrad grafting
    "interpreted-blocks": {"lr": 0.01, "graft_type": "adagrad", "block_size": 3,
                           "preconditioning_compute_steps": 10, "start_preconditioning_step": 3},
    # the tensors as they are: 4th-order roots (e = 8) of the 4-D tensors, blocks of 4
    "raw-blocks": {"lr": 0.005, "graft_type": "rmsprop", "shape_interpretation": False, "block_size": 4,
                   "preconditioning_compute_steps": 8, "start_preconditioning_step": 2, "weight_decay": 0.01,
                   "statistics_compute_steps": 2},
    # one-sided, merged into matrices by the default block size (e.g. 4·3·3·3 -> 108: not preconditioned)
    "input-side": {"lr": 0.02, "graft_type": "sgd", "pre_conditioner_type": "input", "block_size": 20,
                   "preconditioning_compute_steps": 3, "start_preconditioning_step": 1,
                   "moving_average_for_momentum": True, "decoupled_weight_decay": True, "weight_decay": 0.1},
    "output-side-svd": {"lr": 0.003, "graft_type": "sqrtn", "shape_interpretation": False,
                        "pre_conditioner_type": "output", "use_svd": True, "preconditioning_compute_steps": 3},
}


def _full(hp):
    return {**optim.get("shampoo").defaults, **hp}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(ND_CASES))
def test_nd_tensors_match_reference(case, dtype):
    """Both chain paths (for-loop and foreach) against one run of the reference."""
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    hp = ND_CASES[case]
    grads = make_grads(ND_SHAPES, steps=100, dtype=dtype)
    ref_p = make_params(ND_SHAPES, dtype)
    ref = _shampoo([{"params": ref_p}], **_full(hp))
    run(ref, ref_p, grads)
    start = make_params(ND_SHAPES, dtype)
    for foreach in (False, True):
        ours_p = make_params(ND_SHAPES, dtype)
        ours = optim.create("shampoo", ours_p, foreach=foreach, **hp)
        run(ours, ours_p, grads)
        for i, (a, r) in enumerate(zip(ours_p, ref_p)):
            assert not torch.equal(r, start[i])
            assert rel_diff(a, r) <= tol, f"foreach={foreach} param {i} {tuple(a.shape)}: {rel_diff(a, r):.2e}"
            assert rel_diff(ours.state[a]["momentum"], ref.state[r]["momentum"]) <= tol, f"foreach={foreach}"


def test_nd_cases_are_preconditioned():
    """The 3-D/4-D tensors of these cases do get non-identity roots (not grafting alone)."""
    params = make_params(ND_SHAPES)
    opt = optim.create("shampoo", params, **ND_CASES["raw-blocks"])
    run(opt, params, make_grads(ND_SHAPES, steps=8))
    for p in params[:3]:
        roots = opt.state[p]["preconditioners"]
        assert roots and not all(torch.equal(r, torch.eye(r.shape[0])) for r in roots)


# -- resuming between root updates ------------------------------------------------------

RESUME = {"lr": 0.01, "graft_type": "adagrad", "block_size": 3, "preconditioning_compute_steps": 10,
          "statistics_compute_steps": 3, "start_preconditioning_step": 5, "weight_decay": 0.01}


@pytest.mark.parametrize("graft", ["adagrad", "adam", "sgd"])
@pytest.mark.parametrize("stop", [37, 43])
def test_state_dict_round_trip_between_root_updates(graft, stop):
    shapes = [(6, 5), (6,), (3, 6), (2, 3, 4)]
    hp = {**RESUME, "graft_type": graft}
    grads = make_grads(shapes, steps=100)
    whole = make_params(shapes)
    run(optim.create("shampoo", whole, **hp), whole, grads)

    half = make_params(shapes)
    opt = optim.create("shampoo", half, **hp)
    run(opt, half, grads, stop=stop)
    buffer = io.BytesIO()
    torch.save({"params": half, "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_p = saved["params"]
    resumed = optim.create("shampoo", resumed_p, **hp)
    resumed.load_state_dict(saved["optimizer"])
    run(resumed, resumed_p, grads, start=stop)
    for a, b in zip(resumed_p, whole):
        assert torch.equal(a, b)


# -- Adam grafting: RMSProp grafting with a bias correction, built from the reference ------


class _AdamGraftedReference:
    """ScalableShampoo with RMSProp grafting run as Adam grafting.

    Adam's graft ``g/(√(v/b) + ε)`` with ``b = 1 − β₂ᵗ`` is ``√b·g/(√v + ε·√b)``:
    RMSProp's graft with ε·√b, times √b. The Shampoo direction is rescaled to the
    graft's norm, so it takes the factor √b too; with
    ``decoupled_learning_rate=False`` the reference multiplies both directions by
    its group lr before the momentum and steps by the momentum alone, so an lr of
    ``lr·√b`` at step t gives ours (decoupled lr, no weight decay) exactly.
    """

    def __init__(self, params, lr, **hp):
        self.lr = lr
        self.beta2 = hp["betas"][1]
        self.eps = hp["diagonal_eps"]
        self.opt = _shampoo([{"params": params}], lr=lr, **{**hp, "graft_type": "rmsprop",
                                                           "decoupled_learning_rate": False})
        self.t = 0

    def step(self):
        self.t += 1
        b = 1 - self.beta2**self.t
        group = self.opt.param_groups[0]
        self.opt.init_group(group)  # creates the grafts at the first step, as step() would
        group["lr"] = self.lr * b**0.5
        for p in group["params"]:
            self.opt.state[p]["graft"].diagonal_eps = self.eps * b**0.5
        self.opt.step()

    def zero_grad(self):
        self.opt.zero_grad()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_adam_grafting_by_construction(dtype):
    shapes = [(6, 5), (6,), (3, 6), (3,)]
    hp = {"graft_type": "adam", "block_size": 4, "shape_interpretation": False, "betas": (0.9, 0.99),
          "diagonal_eps": 1e-3, "preconditioning_compute_steps": 5, "start_preconditioning_step": 3}
    lr = 0.01
    grads = make_grads(shapes, dtype=dtype)
    ours_p, ref_p = make_params(shapes, dtype), make_params(shapes, dtype)
    run(optim.create("shampoo", ours_p, lr=lr, **hp), ours_p, grads)
    full = {k: v for k, v in _full(hp).items() if k != "lr"}
    ref = _AdamGraftedReference(ref_p, lr, **full)
    run(ref, ref_p, grads)
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    for a, r in zip(ours_p, ref_p):
        assert rel_diff(a, r) <= tol


# -- the plan ---------------------------------------------------------------------------


def test_interpreted_shape():
    assert S.interpreted_shape([6, 5], 512) == [1]
    assert S.interpreted_shape([6, 5], 2) == [1, 6, 5]
    assert S.interpreted_shape([3, 6], 4) == [3, 6]
    assert S.interpreted_shape([1024, 1024], 512) == [1, 1024, 1024]
    assert S.interpreted_shape([1024], 512) == [1, 1024]
    assert S.interpreted_shape([64, 32, 3, 3], 512) == [64, 288]
    assert S.interpreted_shape([1, 2, 768, 1, 2048], 1024) == [2, 768, 2048]


def test_block_plan_of_a_1024_matrix():
    plan = S.block_plan((1024, 1024), 512, True, "all", 1, 8192, 0)
    assert plan.shape == (1, 1024, 1024) and plan.exponent == 6
    assert plan.block_shapes == ((1, 512, 512),) * 4
    assert plan.sizes == (1, 512, 512) * 4
    plain = S.block_plan((1024, 1024), 512, False, "all", 1, 8192, 0)
    assert plain.exponent == 4 and plain.sizes == (512, 512) * 4
    edge = S.block_plan((1000, 700), 512, False, "all", 1, 8192, 0)
    assert edge.block_shapes == ((512, 512), (512, 188), (488, 512), (488, 188))
    assert not S.block_plan((5000,), 512, True, "all", 2, 8192, 0).preconditioned
    assert not S.block_plan((10000, 4), 512, False, "all", 1, 8192, 0).preconditioned


def test_inverse_root_is_a_root():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 30, generator=g, dtype=torch.float64)
    stat = a @ a.T + 0.1 * torch.eye(20, dtype=torch.float64)
    root = S.inverse_pth_root(stat, 4, ridge_epsilon=0.0)
    evals, vecs = torch.linalg.eigh(stat)
    exact = vecs @ torch.diag(evals.pow(-0.25)) @ vecs.T
    # The iteration stops at max|M − I| ≤ 1e-3, so the root is good to ~1e-3/p.
    assert rel_diff(root, exact) < 1e-3


def test_roots_only_on_update_steps(monkeypatch):
    calls = []
    real = S.inverse_pth_root

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "inverse_pth_root", counting)
    params = make_params([(6, 5)])
    opt = optim.create("shampoo", params, block_size=4, shape_interpretation=False,
                       preconditioning_compute_steps=10)
    run(opt, params, make_grads([(6, 5)], steps=35))
    (shampoo,) = [t for t in walk(opt.transforms) if isinstance(t, S.ScaleByShampoo)]
    plan = shampoo.plan((6, 5), opt.param_groups[0])
    assert plan.sizes == (4, 4, 4, 1, 2, 4, 2, 1)
    assert len(calls) == 3 * len(plan.sizes)  # steps 10, 20 and 30 only


# -- FSDP2 shards -----------------------------------------------------------------------

SHARDED_HP = {"lr": 0.01, "graft_type": "adagrad", "shape_interpretation": False, "block_size": 5,
              "preconditioning_compute_steps": 5, "start_preconditioning_step": 3, "weight_decay": 0.01}
SHARDED_STEPS = 30
HALF_BATCH = 8


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    # weights (16, 12), (7, 16), (1, 7): rows split 8+8, 4+3 and 1+0 over two ranks;
    # blocks of 5 rows cut across the shard boundaries
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 7), nn.Tanh(), nn.Linear(7, 1))


def _batch(step: int, half: int):
    g = torch.Generator().manual_seed(1000 * step + half)
    x = torch.randn(HALF_BATCH, 12, generator=g)
    return x, x[:, :1].sin()


def _mlp_loss(model, x, y):
    return ((model(x) - y) ** 2).mean()


def _sharded_worker(rank: int, store: str, root: str) -> None:
    from torch.distributed.fsdp import fully_shard

    from ..distributed.group import finish, join

    join(rank, store)
    try:
        model = _mlp()
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        opt = optim.create("shampoo", model.parameters(), **SHARDED_HP)
        for step in range(SHARDED_STEPS):
            opt.zero_grad()
            _mlp_loss(model, *_batch(step, rank)).backward()
            opt.step()
        out = {"params": {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}}
        out["statistics"] = {n: list(opt.state[p]["statistics"]) for n, p in model.named_parameters()}
        out["preconditioners"] = {n: list(opt.state[p]["preconditioners"]) for n, p in model.named_parameters()}
        out["plain"] = all(
            type(t) is torch.Tensor
            for p in model.parameters()
            for key in ("statistics", "preconditioners")
            for t in opt.state[p][key]
        )
        out["momentum_sharded"] = all(
            hasattr(opt.state[p]["momentum"], "placements") for p in model.parameters()
        )
        torch.save(out, Path(root) / f"rank{rank}.pt")
        finish()
    finally:
        dist.destroy_process_group()


def test_fsdp2_shards_equal_one_process():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mp.spawn(_sharded_worker, args=(str(root / "store"), str(root)), nprocs=2, join=True)
        ranks = [torch.load(root / f"rank{r}.pt", weights_only=True) for r in range(2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _mlp()
        opt = optim.create("shampoo", model.parameters(), **SHARDED_HP)
        for step in range(SHARDED_STEPS):
            opt.zero_grad()
            for half in range(2):
                _mlp_loss(model, *_batch(step, half)).backward()
            for p in model.parameters():
                p.grad.div_(2)  # FSDP's reduce-scatter averages the two halves' gradients
            opt.step()
    finally:
        torch.set_num_threads(threads)
    for r in ranks:
        assert r["plain"] and r["momentum_sharded"]
    for n, p in model.named_parameters():
        torch.testing.assert_close(ranks[0]["params"][n], p.detach(), rtol=1e-5, atol=1e-6)
        for key in ("statistics", "preconditioners"):
            # plain tensors, the same on both ranks, and as in one process
            for a, b, c in zip(ranks[0][key][n], ranks[1][key][n], opt.state[p][key]):
                assert torch.equal(a, b), f"{n} {key} differ between ranks"
                assert rel_diff(a, c) <= 1e-5, f"{n} {key}: {rel_diff(a, c):.1e} from one process"
    assert any(len(s) > 0 for s in ranks[0]["statistics"].values())


# -- options and dtypes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"graft_type": "adamw"}, "invalid graft_type='adamw': expected one of 'none', 'sgd'"),
        ({"graft_type": 7}, "invalid graft_type=7"),
        ({"pre_conditioner_type": "both"}, "invalid pre_conditioner_type='both'"),
        ({"block_size": 0}, "invalid block_size=0: expected an integer >= 1"),
        ({"preconditioning_compute_steps": 0}, "invalid preconditioning_compute_steps=0"),
        ({"start_preconditioning_step": 0}, "invalid start_preconditioning_step=0"),
        ({"inverse_exponent_override": -1}, "invalid inverse_exponent_override=-1"),
        ({"matrix_eps": -1e-6}, "invalid matrix_eps=-1e-06"),
        ({"betas": (0.9, 1.0)}, "invalid betas=(0.9, 1.0)"),
    ],
)
def test_invalid_options(hparams, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        optim.create("shampoo", [torch.zeros(3, 2)], **hparams)


def test_reference_integers_are_accepted():
    a, b = make_params([(6, 5)]), make_params([(6, 5)])
    grads = make_grads([(6, 5)], steps=12)
    hp = {"block_size": 4, "preconditioning_compute_steps": 4, "start_preconditioning_step": 2}
    run(optim.create("shampoo", a, graft_type="rmsprop", pre_conditioner_type="output", **hp), a, grads)
    run(optim.create("shampoo", b, graft_type=3, pre_conditioner_type=2, **hp), b, grads)
    assert torch.equal(a[0], b[0])


def test_bfloat16_parameters_keep_float32_statistics_through_a_state_dict():
    params = [torch.randn(40, 24, dtype=torch.bfloat16)]
    hp = {"block_size": 16, "shape_interpretation": False, "preconditioning_compute_steps": 2,
          "start_preconditioning_step": 1, "graft_type": "adagrad"}
    opt = optim.create("shampoo", params, **hp)
    for _ in range(3):
        params[0].grad = torch.randn_like(params[0])
        opt.step()
    state = opt.state[params[0]]
    assert all(s.dtype == torch.float32 for s in state["statistics"] + state["preconditioners"])
    resumed = optim.create("shampoo", params, **hp)
    resumed.load_state_dict(opt.state_dict())  # torch casts the state to bfloat16 here
    params[0].grad = torch.randn_like(params[0])
    resumed.step()
    state = resumed.state[params[0]]
    assert all(s.dtype == torch.float32 for s in state["statistics"] + state["preconditioners"])
    assert torch.isfinite(params[0]).all()
