"""SOAP beyond the reference matrix: 3-D/4-D tensors, merge_dims and channels_last
(against pytorch_optimizer.SOAP), a state_dict round trip between two eigenbasis
refreshes, and the rule on dim-0 shards (two simulated ranks in threads)."""

from __future__ import annotations

import io
import threading

import pytest
import torch
from pytorch_optimizer import SOAP

from descentlab import optim
from descentlab.optim import sharded
from descentlab.optim.transforms.soap import Layout, merge_small_dims

from .problems import make_grads, make_params, rel_diff, run

#: Convolution-like and higher-order shapes. With max_precondition_dim=12 and
#: merge_dims: (4, 3, 5) → (12, 5); (2, 3, 3, 4) → (6, 12), channels_last (8, 9);
#: (5, 4, 3) → (5, 12); (13, 2) → (1, 13, 2), 13 left unpreconditioned. The thin
#: (40, 3) and (3, 40) take the transposed-copy products of ``apply_along``.
CONV = [(4, 3, 5), (2, 3, 3, 4), (5, 4, 3), (13, 2), (40, 3), (3, 40)]

CONV_CASES = {
    "default": {},
    "merge": {"merge_dims": True, "max_precondition_dim": 12, "weight_decay": 0.1},
    "merge_channels_last": {
        "merge_dims": True,
        "max_precondition_dim": 12,
        "data_format": "channels_last",
        "precondition_frequency": 4,
    },
    "small_max_dim": {"max_precondition_dim": 3, "precondition_frequency": 4, "maximize": True, "correct_bias": False},
    "normalize": {"normalize_gradient": True, "lr": 0.01, "betas": (0.9, 0.98), "shampoo_beta": 0.8},
}


def _soap_defaults(**hp):
    return {**optim.get("soap").defaults, **hp}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_higher_order_tensors_match_the_reference(case, dtype):
    """Both chain paths (for-loop and foreach) against one run of the reference."""
    hp = CONV_CASES[case]
    grads = make_grads(CONV, dtype=dtype)
    ref_p = make_params(CONV, dtype)
    ref = SOAP(ref_p, **_soap_defaults(**hp))
    run(ref, ref_p, grads)
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    for foreach in (False, True):
        ours_p = make_params(CONV, dtype)
        ours = optim.create("soap", ours_p, foreach=foreach, **hp)
        run(ours, ours_p, grads)
        for i, (a, b) in enumerate(zip(ours_p, ref_p)):
            assert rel_diff(a, b) <= tol, f"foreach={foreach} param {i} {tuple(a.shape)}: {rel_diff(a, b):.2e}"
            for key in ("exp_avg", "exp_avg_sq"):
                assert rel_diff(ours.state[a][key], ref.state[b][key]) <= tol, (foreach, i, key)


def test_merged_layouts():
    assert merge_small_dims((2, 3, 4, 512), 64) == [24, 512]
    assert merge_small_dims((6282, 512), 1024) == [1, 6282, 512]
    hp = {"max_precondition_dim": 12, "merge_dims": True, "precondition_1d": False, "data_format": "channels_last"}
    layout = Layout.of((2, 3, 3, 4), hp)
    assert (layout.permute, layout.work, layout.pre) == (True, (8, 9), (True, True))
    x = torch.arange(72.0).reshape(2, 3, 3, 4)
    assert torch.equal(layout.from_work(layout.to_work(x)), x)
    # Everything would merge into one dimension (the reference raises): kept as it is.
    layout = Layout.of((3, 4), {**hp, "data_format": "channels_first"})
    assert (layout.permute, layout.work, layout.pre) == (False, (3, 4), (True, True))
    # Size-1 dimensions and dimensions above max_precondition_dim: no preconditioner.
    layout = Layout.of((1, 13, 2), {**hp, "merge_dims": False})
    assert layout.pre == (False, False, True)


def test_merge_dims_on_tensors_that_merge_into_one_keeps_their_shape():
    shapes = [(6,), (3, 4), (2, 3, 400)]
    grads = make_grads(shapes, steps=30)
    merged, plain = make_params(shapes), make_params(shapes)
    run(optim.create("soap", merged, merge_dims=True, max_precondition_dim=1000), merged, grads)
    run(optim.create("soap", plain, max_precondition_dim=1000), plain, grads)
    # (6,) and (3, 4) are left as they are, as with merge_dims=False.
    assert torch.equal(merged[0], plain[0]) and torch.equal(merged[1], plain[1])
    assert not torch.equal(merged[2], plain[2])  # (2, 3, 400) → (6, 400): merged


SHAPES = [(6, 5), (6,), (3, 6), (3,), (2, 3, 4)]


@pytest.mark.parametrize("stop", [1, 11, 15], ids=["after_init", "at_refresh", "between_refreshes"])
def test_state_dict_round_trip_between_refreshes(stop):
    hp = {"precondition_frequency": 10, "weight_decay": 0.1, "precondition_1d": True, "lr": 0.01}
    grads = make_grads(SHAPES, steps=40)
    full = make_params(SHAPES)
    opt = optim.create("soap", [{"params": full[:2]}, {"params": full[2:]}], **hp)
    run(opt, full, grads)

    half = make_params(SHAPES)
    opt = optim.create("soap", [{"params": half[:2]}, {"params": half[2:]}], **hp)
    run(opt, half, grads, stop=stop)
    buffer = io.BytesIO()
    torch.save({"params": half, "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_p = saved["params"]
    resumed = optim.create("soap", [{"params": resumed_p[:2]}, {"params": resumed_p[2:]}], **hp)
    resumed.load_state_dict(saved["optimizer"])
    run(resumed, resumed_p, grads, start=stop)
    for a, b in zip(resumed_p, full):
        assert torch.equal(a, b)


def test_first_step_only_initializes_each_parameter():
    params = make_params([(4, 3), (5,)])
    before = [p.clone() for p in params]
    opt = optim.create("soap", params, weight_decay=0.5)
    grads = make_grads([(4, 3), (5,)], steps=3)
    params[0].grad, params[1].grad = grads[0][0], None
    opt.step()
    assert torch.equal(params[0], before[0]), "the first step only initializes the preconditioner"
    assert not opt.state[params[1]]
    params[0].grad, params[1].grad = grads[1]
    opt.step()
    assert not torch.equal(params[0], before[0])
    assert torch.equal(params[1], before[1]), "a parameter's own first step moves nothing, decay included"
    state = opt.state[params[0]]
    assert sorted(state) == ["GG_0", "GG_1", "Q_0", "Q_1", "exp_avg", "exp_avg_projected", "exp_avg_sq", "step"]
    assert sorted(opt.state[params[1]]) == ["exp_avg", "exp_avg_sq", "step"]


def test_bfloat16_parameters_step():
    params = [p.to(torch.bfloat16) for p in make_params([(6, 5), (4,)])]
    opt = optim.create("soap", params, precondition_frequency=2)
    run(opt, params, [[g.to(torch.bfloat16) for g in gs] for gs in make_grads([(6, 5), (4,)], steps=6)])
    assert all(torch.isfinite(p).all() for p in params)
    assert opt.state[params[0]]["Q_0"].dtype == torch.bfloat16


@pytest.mark.parametrize(
    "hp,message",
    [
        ({"shampoo_beta": 1.0}, "invalid shampoo_beta=1.0: expected None (use betas[1]) or a number in [0, 1)"),
        ({"precondition_frequency": 0}, "invalid precondition_frequency=0: expected an integer >= 1"),
        ({"max_precondition_dim": 2.5}, "invalid max_precondition_dim=2.5"),
        ({"data_format": "nhwc"}, "invalid data_format='nhwc': expected one of 'channels_first', 'channels_last'"),
        ({"merge_dims": 1}, "invalid merge_dims=1: expected True or False"),
        ({"eps": 0.0}, "invalid eps=0.0"),
    ],
)
def test_invalid_hyperparameters(hp, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        optim.create("soap", [torch.zeros(3, 2, requires_grad=True)], **hp)


def test_changing_the_layout_after_the_first_step_is_refused():
    params = make_params([(6, 5)])
    opt = optim.create("soap", params)
    run(opt, params, make_grads([(6, 5)], steps=2))
    opt.param_groups[0]["max_precondition_dim"] = 5
    params[0].grad = torch.ones(6, 5)
    with pytest.raises(ValueError, match="cannot change after a parameter's first step"):
        opt.step()


# -- dim-0 shards, two simulated ranks ------------------------------------------------


class _FakeSharding:
    """What the transform reads of a sharding: the global shape."""

    def __init__(self, shape):
        self.shape = torch.Size(shape)


class _ShardState(dict):
    def __init__(self, shape):
        super().__init__()
        self.sharding = _FakeSharding(shape)


class _Ranks:
    """An all-gather on dim 0 (torch.chunk's split, as FSDP2) between threads."""

    def __init__(self, world):
        self.world = world
        self.barrier = threading.Barrier(world)
        self.slots = [None] * world
        self.local = threading.local()
        self.gathered = []

    def full(self, t, state):
        if sharded.sharding(state) is None:
            return t
        rank = self.local.rank
        self.slots[rank] = t
        self.barrier.wait()
        whole = torch.cat(self.slots, dim=0)
        self.barrier.wait()
        if rank == 0:
            self.gathered.append(tuple(whole.shape))
        return whole

    def shard(self, t, state):
        if sharded.sharding(state) is None:
            return t
        return t.chunk(self.world, dim=0)[self.local.rank]

    def all_reduce_sum(self, values, states, dims=None):
        out = list(values)
        for i, state in enumerate(states):
            if sharded.sharding(state) is not None:
                out[i] = self.full(values[i].reshape(1), state).sum()
        return out


def _sharded_run(shapes, hp, grads, world, monkeypatch):
    ranks = _Ranks(world)
    for name in ("full", "shard", "all_reduce_sum"):
        monkeypatch.setattr(sharded, name, getattr(ranks, name))
    whole = make_params(shapes)
    opt = optim.create("soap", [torch.zeros(s) for s in shapes], **hp)
    group = opt.param_groups[0]
    results = [None] * world
    errors = []

    def worker(rank):
        try:
            ranks.local.rank = rank
            params = [p.chunk(world, dim=0)[rank].clone() for p in whole]
            states = []
            for p, s in zip(whole, shapes):
                state = _ShardState(s)
                opt._init_state(p, state, group)
                for key, value in state.items():  # what LocalState does: DTensors → local shards
                    if isinstance(value, torch.Tensor) and value.shape == p.shape and not key.startswith(("GG", "Q")):
                        state[key] = value.chunk(world, dim=0)[rank].clone()
                states.append(state)
            for step_grads in grads:
                for state in states:
                    state["step"] += 1
                local = [g.chunk(world, dim=0)[rank].clone() for g in step_grads]
                opt._step_group(params, local, states, group)
            results[rank] = params
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            ranks.barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [torch.cat([results[r][i] for r in range(world)], dim=0) for i in range(len(shapes))], ranks.gathered


SHARD_SHAPES = [(8, 5), (6,), (4, 3, 2), (6, 6)]
SHARD_CASES = {
    "default_normalize": {"precondition_frequency": 3, "normalize_gradient": True},
    "precondition_1d_normalize": {"precondition_1d": True, "normalize_gradient": True, "precondition_frequency": 2},
    "merge_small_dim": {"merge_dims": True, "max_precondition_dim": 6, "maximize": True, "precondition_frequency": 4},
}


@pytest.mark.parametrize("case", list(SHARD_CASES))
def test_two_dim0_shards_equal_one_tensor(case, monkeypatch):
    hp = {**SHARD_CASES[case], "weight_decay": 0.1, "lr": 0.01}
    grads = make_grads(SHARD_SHAPES, steps=12)
    plain = make_params(SHARD_SHAPES)
    run(optim.create("soap", plain, **hp), plain, grads)
    shards, gathered = _sharded_run(SHARD_SHAPES, hp, grads, 2, monkeypatch)
    for i, (a, b) in enumerate(zip(shards, plain)):
        if case == "default_normalize" and i == 1:
            # Elementwise (Adam) on the shard; normalize_gradient's mean is a sum of
            # two partial sums there, rounded differently from one sum.
            assert rel_diff(a, b) <= 1e-6, f"param {i}: {rel_diff(a, b):.2e}"
        else:
            # Every rank computes the same whole products; the rest is elementwise.
            assert torch.equal(a, b), f"param {i}: {rel_diff(a, b):.2e}"
    if case == "default_normalize":
        # Per preconditioned parameter: the gradient at step 1; the gradient and the
        # normalized direction at steps 2..12; exp_avg_sq and exp_avg at the refreshes
        # (t = 4, 7, 10): 1 + 2·11 + 2·3 = 29, for (8, 5), (4, 3, 2) and (6, 6).
        whole = [g for g in gathered if g in {(8, 5), (4, 3, 2), (6, 6)}]
        assert len(whole) == 3 * 29
        # The 6-vector (no preconditioner): one scalar all-reduce per step for the mean.
        assert gathered.count((2,)) == 11
