"""The `families` suite's workloads of part B: translate, molgraph, clicks, mnist1d-ctc.

Each builds at seeds 0 and 1 (different draws), deterministically and without
touching a global generator; its model's forward, loss and metric work on a
batch; a few optimizer steps lower the training loss; the activation variant
changes the model; and the data is what the module docstring says. Most tests
build small splits (``sizes=``); the full-size data is checked once per workload.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from descentlab.benchmark import variants
from descentlab.workloads import registry
from descentlab.workloads.families import clicks, ctc, graph, translate
from tests.workloads.rng import assert_no_global_draws

SMALL = {"train": 128, "val": 64, "test": 64}


def _fake_mnist1d() -> dict[str, np.ndarray]:
    """Arrays shaped like the mnist1d package's (400 + 100 signals of 40 samples)."""
    g = np.random.default_rng(0)
    return {"x": g.standard_normal((400, 40)), "y": np.arange(400) % 10,
            "x_test": g.standard_normal((100, 40)), "y_test": np.arange(100) % 10}


BUILDERS = {
    "translate": lambda seed: translate.build(seed, sizes=SMALL),
    "molgraph": lambda seed: graph.build(seed, sizes=SMALL),
    "clicks": lambda seed: clicks.build(seed, sizes=SMALL),
    "mnist1d-ctc": lambda seed: ctc.build(seed, sizes=SMALL, arrays=_fake_mnist1d()),
}
NAMES = list(BUILDERS)


@pytest.fixture(scope="module")
def small():
    return {name: {seed: assert_no_global_draws(lambda b=build, s=seed: b(s)) for seed in (0, 1)}
            for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_lazy(name):
    spec = registry.get(name)
    assert spec.summary and not spec.needs_data_dir


@pytest.mark.parametrize("name", NAMES)
def test_seeded_and_deterministic(name, small):
    a, b = small[name][0], small[name][1]
    again = BUILDERS[name](0)
    for split in ("train", "val", "test"):
        assert torch.equal(a.split(split)[0], again.split(split)[0])
        assert torch.equal(a.split(split)[1], again.split(split)[1])
    assert not torch.equal(a.train[0], b.train[0])  # the seed draws the data
    assert a.num_examples("train") == SMALL["train"] and a.seed == 0 and b.seed == 1


@pytest.mark.parametrize("name", NAMES)
def test_model_loss_metric_and_a_few_steps(name, small):
    w = small[name][0]
    torch.manual_seed(0)
    model = w.make_model()
    x, y = w.train
    with torch.no_grad():
        first = float(w.loss_fn(model(x), y))
    assert math.isfinite(first)
    out = model(w.val[0][:32])
    value = w.metric_fn(out, w.val[1][:32]) if w.metric != "loss" else float(w.loss_fn(out, w.val[1][:32]).detach())
    assert math.isfinite(value)
    lo, hi = w.metric_range
    assert lo <= value <= hi
    opt = torch.optim.Adam(model.parameters(), lr=w.default_lr("adam"))
    for _ in range(10):
        loss = w.loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(w.loss_fn(model(x), y)) < first
    assert w.recipe["steps"] and w.default_lr(w.recipe["optimizer"]) == w.recipe["lr"]


@pytest.mark.parametrize("name", NAMES)
def test_activation_variant_changes_the_model(name, small, monkeypatch):
    w = small[name][0]
    monkeypatch.setattr(registry, "load", lambda ref, seed=0, data_dir=None: w)
    v = variants.build(name, {"activation": "gelu"})
    torch.manual_seed(0)
    base = w.make_model()
    torch.manual_seed(0)
    other = v.make_model()
    assert any(isinstance(m, torch.nn.ReLU) for m in base.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in other.modules())
    assert any(isinstance(m, torch.nn.GELU) for m in other.modules())
    x = w.val[0][:16]
    base.eval()
    other.eval()
    with torch.no_grad():  # evaluation too: no fast path keeps the old activation
        assert not torch.allclose(base(x), other(x))


def test_translate_data():
    w = translate.build(0, sizes={"train": 2000, "val": 10, "test": 10})
    x, y = w.train
    assert x.shape == (2000, translate.SRC_LEN + translate.TGT_LEN) and y.shape == (2000, translate.TGT_LEN)
    src, dec_in = x[:, : translate.SRC_LEN], x[:, translate.SRC_LEN :]
    assert torch.equal(dec_in[:, 0], torch.full((2000,), translate.BOS))
    assert torch.equal(dec_in[:, 1:], y[:, :-1] * (y[:, :-1] != translate.EOS))  # teacher forcing: shifted right
    src_len = (src != 0).sum(1)
    tgt_len = (y != 0).sum(1)
    assert torch.equal(tgt_len, src_len + 1)  # word for word, plus <eos>
    assert 3 <= int(src_len.min()) and int(src_len.max()) <= translate.SRC_LEN
    # the verb (last target word) is the source's second-to-... word after the subject: check one sentence
    lang = translate.Language()
    s, t = lang.sentences(1, np.random.default_rng(3))[0]
    verbs = set(lang.src_ids["vt"].tolist()) | set(lang.src_ids["vi"].tolist())
    verb = next(i for i in s if i in verbs)
    lex = dict(zip(lang.src_ids["vt"].tolist(), lang.tgt_of["vt"].tolist()))
    lex.update(zip(lang.src_ids["vi"].tolist(), lang.tgt_of["vi"].tolist()))
    assert t[-1] == lex[verb]  # verb-final
    assert lang.det_form[lang.src_ids["det"].tolist().index(s[0]),
                         lang.gender[lang.src_ids["noun"].tolist().index(next(i for i in s if i in set(lang.src_ids["noun"].tolist())))]] == t[0]
    assert w.info["unigram_loss"] > 1.0 and w.info["model"]["parameters"] < 200_000


def test_molgraph_data():
    types, adj = graph.draw_graphs(500, np.random.default_rng(0))
    atoms = (types >= 0).sum(1)
    assert atoms.min() >= graph.MIN_ATOMS and atoms.max() <= graph.MAX_ATOMS
    assert np.array_equal(adj, adj.transpose(0, 2, 1)) and not adj[:, range(20), range(20)].any()
    assert not adj[types < 0].any()  # padding atoms have no bonds
    bonds = adj.sum((1, 2)) / 2
    assert (bonds >= atoms - 1).all() and (bonds <= atoms + 1).all()  # a tree plus 0-2 ring bonds
    # connected: the tree reaches every atom
    reach = np.eye(20)[None].repeat(500, 0) * (types >= 0)[:, :, None]
    for _ in range(20):
        reach = np.minimum(1, reach + reach @ adj)
    assert (reach[:, 0].sum(1) == atoms).all()
    y = graph.labels(types, adj)
    assert y.shape == (500, len(graph.TASKS))
    rate = y.mean(0)
    assert (rate > 0.03).all() and (rate < 0.8).all()
    assert np.array_equal(y[:, 4], bonds > atoms - 1)  # "ring"
    w = graph.build(0, sizes={"train": 500, "val": 10, "test": 10})
    x, yt = w.train
    assert x.shape == (500, 20, len(graph.TYPES) + 20) and yt.dtype == torch.float32
    assert torch.equal(x[..., : len(graph.TYPES)].sum(-1) > 0, torch.arange(20)[None] < x[..., :6].sum((1, 2))[:, None])


def test_clicks_data():
    w = clicks.build(0, sizes={"train": 20_000, "val": 5_000, "test": 10})
    x, y = w.train
    assert x.shape == (20_000, clicks.DENSE + len(clicks.CARDINALITIES)) and x.dtype == torch.float32
    ids = x[:, clicks.DENSE :]
    assert torch.equal(ids, ids.round()) and (ids >= 0).all()
    assert (ids.max(0).values < torch.tensor(clicks.CARDINALITIES)).all()
    assert abs(float(y.mean()) - clicks.CLICK_RATE) < 0.02
    # Zipf: the most frequent id of the largest field is far above uniform
    counts = torch.bincount(ids[:, 0].long(), minlength=clicks.CARDINALITIES[0])
    assert counts.max() > 0.05 * len(ids) and (counts == 0).sum() > clicks.CARDINALITIES[0] // 3
    dense = x[:, : clicks.DENSE]
    assert torch.allclose(dense.mean(0), torch.zeros(clicks.DENSE), atol=1e-3)
    assert w.info["bayes_logloss"] < w.info["prior_logloss"] - 0.1
    torch.manual_seed(0)
    model = w.make_model()
    loss = w.loss_fn(model(x[:64]), y[:64])
    loss.backward()
    grad = model.tables[0].weight.grad
    assert not grad.is_sparse  # dense gradients: every optimizer takes them
    touched = (grad != 0).any(1).sum()
    assert 0 < touched <= len(torch.unique(ids[:64, 0]))


def test_ctc_utterances_and_metric():
    g = np.random.default_rng(0)
    signals = np.arange(5)[:, None] * np.ones((5, 40), dtype=np.float32) + 1
    x, y = ctc.utterances(signals, np.arange(5), 300, g)
    n = (y >= 0).sum(1)
    assert x.shape == (300, ctc.LENGTH) and set(n.tolist()) == {2, 3, 4}
    for i in range(20):  # the signals appear in order, with gaps of at most GAP
        levels = np.round(x[i])[np.abs(x[i]) > 0.5]
        runs = [int(v) - 1 for v, _ in itertools.groupby(levels.tolist())]
        assert runs == [d for d, _ in itertools.groupby(y[i, : n[i]].tolist())]
    # greedy decoding merges repeats and drops blanks; edit distance counts errors
    b = ctc.BLANK
    frames = torch.tensor([[3, 3, b, 3, 7, 7, b, b]])
    logits = torch.nn.functional.one_hot(frames, ctc.CLASSES).float()
    assert ctc.greedy_decode(logits) == [[3, 3, 7]]
    assert ctc.edit_distance([3, 3, 7], [3, 7]) == 1 and ctc.edit_distance([], [1, 2]) == 2
    assert ctc.digit_error_rate(logits, torch.tensor([[3, 3, 7, -1]])) == 0.0
    assert ctc.digit_error_rate(logits, torch.tensor([[3, 7, 1, 2]])) == 0.75


def test_ctc_real_signals(use_mnist1d_cache):
    w = ctc.build(0, sizes={"train": 200, "val": 100, "test": 100})
    assert w.info["signals"] == {"train": 3600, "val": 400, "test": 1000}
    x, y = w.train
    assert x.shape == (200, ctc.LENGTH) and y.shape == (200, ctc.MAX_DIGITS)
    assert set(y[y >= 0].unique().tolist()) <= set(range(10))
    torch.manual_seed(0)
    out = w.make_model()(x[:8])
    assert out.shape == (8, w.info["model"]["frames"], ctc.CLASSES)
    assert w.metric == "digit_error_rate" and w.metric_mode == "min"
