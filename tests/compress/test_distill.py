"""Knowledge distillation: the loss and its scale, the frozen teacher, cached teacher logits, architectures;
per token (a language model's logits, shifted labels, ignored positions) on a Hugging Face GPT-2."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from descentlab.compress import DistillationLoss, Distiller, distillation_loss, resolve_arch
from descentlab.compress.arch import check_outputs
from descentlab.compress.distill import IGNORE_INDEX, Distilled, token_cross_entropy, token_distillation_loss
from descentlab.compress.distill_run import default_student
from descentlab.compress.inputs import example_batch
from descentlab.compress.logits import layout_of
from descentlab.errors import UsageError
from descentlab.train.trainer import Trainer
from descentlab.workloads import Workload
from descentlab.workloads.models import ConvNet1d, ConvNet2d, mlp

torch.set_num_threads(1)


def _logits(n=16, c=10, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, c, generator=g), scale * torch.randn(n, c, generator=g),
            torch.randint(0, c, (n,), generator=g))


# -- the loss ---------------------------------------------------------------------


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (3.0, 1.0)])
def test_the_loss_is_the_formula_by_hand(temperature, alpha):
    s, t, y = _logits()
    q = torch.softmax(t / temperature, dim=1)
    log_p = torch.log(torch.softmax(s / temperature, dim=1))
    kl = (q * (torch.log(q) - log_p)).sum(dim=1).mean()  # per example, averaged over the batch
    ce = -torch.log(torch.softmax(s, dim=1))[torch.arange(len(y)), y].mean()
    expected = alpha * temperature**2 * kl + (1 - alpha) * ce
    got = distillation_loss(s, t, y, temperature=temperature, alpha=alpha)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_batchmean_is_kl_per_example_and_mean_is_c_times_too_small():
    s, t, y = _logits(n=8, c=10)
    ours = distillation_loss(s, t, y, temperature=1.0, alpha=1.0)
    log_p, log_q = F.log_softmax(s, 1), F.log_softmax(t, 1)
    per_example = F.kl_div(log_p, log_q, log_target=True, reduction="none").sum(1)
    assert torch.allclose(ours, per_example.mean())
    wrong = nn.KLDivLoss(reduction="mean", log_target=True)(log_p, log_q)  # divides by N*C
    assert torch.allclose(wrong * s.shape[1], ours)


def test_the_t_squared_factor_keeps_the_soft_gradient_scale_independent_of_t():
    s0, t, y = _logits(n=64, c=10, seed=1)
    norms, unscaled = {}, {}
    for temperature in (2.0, 4.0, 8.0, 16.0):
        s = s0.clone().requires_grad_(True)
        distillation_loss(s, t, y, temperature=temperature, alpha=1.0).backward()
        norms[temperature] = s.grad.norm().item()
        unscaled[temperature] = norms[temperature] / temperature**2  # the gradient without T**2
    assert max(norms.values()) / min(norms.values()) < 1.3, norms
    assert unscaled[2.0] / unscaled[16.0] > 40, unscaled  # ~ (16/2)**2 = 64 without the factor


@pytest.mark.parametrize("kwargs, words", [
    ({"temperature": 0}, "temperature=0"), ({"temperature": -1.0}, "temperature=-1.0"),
    ({"temperature": math.inf}, "temperature=inf"), ({"temperature": math.nan}, "temperature=nan"),
    ({"alpha": -0.1}, "alpha=-0.1"), ({"alpha": 1.5}, "alpha=1.5"),
])
def test_bad_temperature_and_alpha_name_the_value(kwargs, words):
    s, t, y = _logits()
    with pytest.raises(UsageError, match=words.replace("[", r"\[").replace(".", r"\.")):
        distillation_loss(s, t, y, **kwargs)
    with pytest.raises(ValueError, match=words.split("=")[0]):
        DistillationLoss(**{"temperature": 2.0, "alpha": 0.5, **kwargs})


def test_logits_of_different_shapes_are_refused_naming_both():
    s, t, y = _logits(c=10)
    with pytest.raises(UsageError, match=r"\(16, 10\).*\(16, 5\)"):
        distillation_loss(s, t[:, :5], y)


def test_the_loss_fn_is_cross_entropy_on_plain_logits_and_the_formula_on_the_pair():
    s, t, y = _logits()
    fn = DistillationLoss(temperature=3.0, alpha=0.7)
    assert torch.allclose(fn(s, y), F.cross_entropy(s, y))
    assert torch.allclose(fn((s, t), y), distillation_loss(s, t, y, temperature=3.0, alpha=0.7))
    assert "temperature=3" in repr(fn)


# -- the Distiller ------------------------------------------------------------------


def _pair(seed=0):
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(12, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 4))
    student = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    return student, teacher


def test_the_teacher_is_frozen_in_eval_mode_and_outside_the_optimizer_and_state_dict():
    student, teacher = _pair()
    d = Distiller(student, teacher)
    d.train()
    assert d.training and student.training and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert set(d.state_dict()) == {f"student.{k}" for k in student.state_dict()}
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in d.parameters()}
    opt = torch.optim.SGD(d.student.parameters(), lr=0.1)
    assert not teacher_ids & {id(p) for g in opt.param_groups for p in g["params"]}

    x, y = torch.randn(10, 12), torch.randint(0, 4, (10,))
    out = d(x)
    s, t = out  # the pair (student, teacher)
    assert s.requires_grad and not t.requires_grad and t.grad_fn is None  # the teacher ran under no_grad
    assert torch.equal(t, d(x).teacher)  # eval mode: dropout off, the same logits every call
    DistillationLoss()(out.logits, y).backward()
    assert all(p.grad is None for p in teacher.parameters())
    teacher.train()  # someone switches it: the Distiller puts it back
    d.train()
    assert not teacher.training
    d.eval()
    assert isinstance(d(x), torch.Tensor) and torch.equal(d(x), student(x))


def _fit(model, data, loss_fn, steps=30, seed=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Trainer(model, opt, loss_fn, batch_size=16, seed=seed, device="cpu").fit(data, max_steps=steps)


def test_cached_teacher_logits_train_the_same_student_as_uncached():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 12, generator=g), torch.randint(0, 4, (100,), generator=g)
    results = []
    for cache in (False, True):
        student, teacher = _pair(seed=1)
        d = Distiller(student, teacher, cache_inputs=x if cache else None)
        data = d.index_split(y) if cache else (x, y)
        _fit(d, data, DistillationLoss(temperature=2.0, alpha=0.8))
        results.append(student.state_dict())
        if cache:
            assert torch.equal(d.index_split(y)[0], torch.arange(100)) and "cached_logits" not in d.state_dict()
            with pytest.raises(ValueError, match="index_split"):
                d.train()(x)
    assert all(torch.allclose(results[0][k], results[1][k], atol=1e-5) for k in results[0])
    student, teacher = _pair(seed=1)
    untrained = student.state_dict()
    assert not all(torch.allclose(untrained[k], results[0][k]) for k in untrained)


def test_alpha_zero_is_training_on_the_labels():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 12, generator=g), torch.randint(0, 4, (100,), generator=g)
    student, teacher = _pair(seed=2)
    _fit(Distiller(student, teacher, cache_inputs=x), (torch.arange(100), y), DistillationLoss(alpha=0.0))
    plain, _ = _pair(seed=2)
    _fit(plain, (x, y), nn.CrossEntropyLoss())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(student.parameters(), plain.parameters()))


# -- architectures ---------------------------------------------------------------------


def _workload(shape=(40,), classes=10, metric="accuracy", n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g) if metric == "accuracy" else torch.randn(n, generator=g)
    return Workload(name="toy", train=(x, y), val=(x, y), test=(x, y), make_model=lambda: mlp([40, classes]),
                    loss_fn=nn.CrossEntropyLoss() if metric == "accuracy" else nn.MSELoss(), metric=metric,
                    num_classes=classes if metric == "accuracy" else None)


def test_arch_forms_on_signals_and_images():
    wl = _workload((40,))
    x = wl.train[0][:5]
    cnn = resolve_arch("cnn-4", wl)()
    assert isinstance(cnn, ConvNet1d) and cnn(x).shape == (5, 10) and cnn.head.in_features == 4 * 5
    net = resolve_arch("mlp-16x8", wl)()
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [16, 8, 10] and net(x).shape == (5, 10)
    logreg = resolve_arch("logreg", wl)()
    assert [type(m) for m in logreg] == [nn.Linear] and logreg[0].in_features == 40
    images = _workload((1, 8, 8))
    xi = images.train[0][:3]
    cnn2 = resolve_arch("cnn-3", images)()
    assert isinstance(cnn2, ConvNet2d) and cnn2(xi).shape == (3, 10)
    assert resolve_arch("mlp-32", images)()(xi).shape == (3, 10)
    torch.manual_seed(7)
    a = resolve_arch("cnn-4", wl)()
    torch.manual_seed(7)
    assert torch.equal(a(x), resolve_arch("cnn-4", wl)()(x))  # initialised from the global generator


def test_a_builtin_workload_name_is_its_model():
    wl = _workload((40,))
    model = resolve_arch("mnist1d-mlp", wl)()
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [100, 100, 10]


def test_a_user_file_and_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_nets_for_distill.py").write_text(
        "import math\nfrom torch import nn\n\n"
        "def small(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))\n\n"
        "def plain():\n    return nn.Linear(40, 10)\n\n"
        "def broken():\n    raise RuntimeError('no luck')\n\n"
        "def not_a_model():\n    return 3\n"
    )
    wl = _workload((40,))
    x = wl.train[0][:4]
    path = tmp_path / "my_nets_for_distill.py"
    assert resolve_arch(f"{path}:small", wl)()(x).shape == (4, 10)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_arch("my_nets_for_distill:plain", wl)()(x).shape == (4, 10)
    with pytest.raises(UsageError, match="has no function 'nosuch'"):
        resolve_arch(f"{path}:nosuch", wl)
    with pytest.raises(UsageError, match="model file .* does not exist"):
        resolve_arch(f"{tmp_path / 'missing.py'}:small", wl)
    with pytest.raises(UsageError, match="raised RuntimeError: no luck"):
        resolve_arch(f"{path}:broken", wl)()
    with pytest.raises(UsageError, match="returned int, expected a torch.nn.Module"):
        resolve_arch(f"{path}:not_a_model", wl)()


@pytest.mark.parametrize("spec, words", [
    ("resnet-9", "unknown architecture 'resnet-9': expected a built-in workload name"),
    ("cnn-0", "sizes must be integers >= 1"),
    ("mlp-", "unknown architecture 'mlp-'"),
    ("", "unknown architecture ''"),
])
def test_unknown_archs_list_the_forms(spec, words):
    with pytest.raises(UsageError, match=words) as info:
        resolve_arch(spec, _workload())
    assert "\n" not in str(info.value)


def test_no_regression_and_matching_outputs():
    with pytest.raises(UsageError, match="only a model that outputs logits can be distilled.*toy is a regression workload"):
        resolve_arch("mlp-8", _workload(metric="r2"))
    x = torch.randn(6, 40)
    with pytest.raises(UsageError, match=r"teacher cnn-25 outputs \(N, 10\) but student cnn-8 outputs \(N, 5\)"):
        check_outputs(ConvNet1d(40, 10, 25), ConvNet1d(40, 5, 8), x, teacher_name="cnn-25", student_name="cnn-8")
    assert check_outputs(ConvNet1d(40, 10, 25), mlp([40, 10]), x) == (6, 10)
    with pytest.raises(UsageError, match="student s fails on the training inputs of shape"):
        check_outputs(mlp([40, 10]), mlp([12, 10]), x, student_name="s")
    with pytest.raises(UsageError, match=r"\(N, L\) signals or \(N, 1, H, W\) images"):
        resolve_arch("cnn-4", _workload((3, 8, 8)))


# -- per token: a language model's logits ------------------------------------------------


def _tokens(n=4, length=7, vocab=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(n, length, vocab, generator=g), torch.randn(n, length, vocab, generator=g)
    y = torch.randint(0, vocab, (n, length), generator=g)
    y[0, 3] = y[2, 0] = y[3, -1] = IGNORE_INDEX
    return s, t, y


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.0, 1.0), (3.0, 0.0)])
def test_the_token_loss_is_the_formula_by_hand(shift, temperature, alpha):
    s, t, y = _tokens()
    kls, ces = [], []
    for i in range(s.shape[0]):
        for j in range(s.shape[1] - (1 if shift else 0)):
            label = y[i, j + 1] if shift else y[i, j]  # a causal LM: position j predicts token j + 1
            if label == IGNORE_INDEX:
                continue
            q = torch.softmax(t[i, j] / temperature, 0)
            kls.append((q * (torch.log(q) - torch.log_softmax(s[i, j] / temperature, 0))).sum())
            ces.append(-torch.log_softmax(s[i, j], 0)[label])
    expected = alpha * temperature**2 * torch.stack(kls).mean() + (1 - alpha) * torch.stack(ces).mean()
    got = token_distillation_loss(s, t, y, temperature=temperature, alpha=alpha, shift=shift)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    fn = DistillationLoss(temperature, alpha, per="token", shift=shift)
    assert torch.allclose(fn((s, t), y), got) and torch.allclose(fn(s, y), torch.stack(ces).mean(), rtol=1e-5)


def test_token_shapes_are_checked_naming_them():
    s, t, y = _tokens()
    with pytest.raises(UsageError, match=r"\(4, 7, 11\) but teacher logits \(4, 7, 5\)"):
        token_distillation_loss(s, t[..., :5], y)
    with pytest.raises(UsageError, match=r"need labels of shape \(4, 7\), got \(4, 6\)"):
        token_distillation_loss(s, t, y[:, :6])
    with pytest.raises(UsageError, match=r"per=.sentence.: expected one of example, token"):
        DistillationLoss(per="sentence")


def _gpt2(n_layer=2):
    from tests.realmodels import gpt2_config

    import transformers

    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(gpt2_config(n_layer)).eval()


def test_the_hard_token_term_is_hugging_faces_own_causal_lm_loss():
    model = _gpt2()
    ids = torch.randint(0, 48, (3, 16), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[1, 5:] = IGNORE_INDEX  # padding: no target there
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    assert torch.allclose(token_cross_entropy(out.logits, labels, shift=True), out.loss, rtol=1e-6)
    alpha0 = token_distillation_loss(out.logits, torch.randn_like(out.logits), labels, alpha=0.0, shift=True)
    assert torch.allclose(alpha0, out.loss, rtol=1e-6)  # alpha = 0: the labels only, exactly the model's loss


def test_a_distiller_of_hugging_face_models_takes_dict_batches_and_evaluates_the_students_own_loss():
    from tests.realmodels import gpt2

    wl = gpt2()
    student, teacher = _gpt2(1), _gpt2(2)
    d = Distiller(student, teacher).train()
    batch = {"input_ids": wl.train.ids[:4]}
    out = d(**batch)  # the Trainer's call on a dict batch, targets left out
    assert isinstance(out, Distilled) and out.student.shape == out.teacher.shape == (4, 16, 48)
    assert out.student.requires_grad and not out.teacher.requires_grad
    fn = DistillationLoss(per="token", shift=True)
    loss = fn(out.logits, wl.train.ids[:4])
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and student.lm_head.weight.grad is not None
    probe = torch.optim.SGD(student.parameters(), lr=0.0)
    ours = Trainer(d, probe, fn, device="cpu").evaluate(wl.val)["loss"]
    own = Trainer(student, probe, None, device="cpu").evaluate(wl.val)["loss"]  # the model's own loss
    assert ours == pytest.approx(own, rel=1e-6)


def test_the_layout_is_found_on_a_batch_and_checked_against_the_workloads_loss():
    from tests.realmodels import gpt2

    wl = gpt2()
    batch = example_batch(wl, 8)
    layout = layout_of(wl, _gpt2(), batch, "teacher")
    assert (layout.per, layout.shift, layout.shape) == ("token", True, (8, 16, 48))
    assert layout_of(_workload(), mlp([40, 10]), example_batch(_workload()), "t").per == "example"

    class Tagger(nn.Module):  # a token classifier: position i predicts label i
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(48, 8), nn.Linear(8, 5)

        def forward(self, input_ids):
            return self.head(self.embed(input_ids))

    ids = torch.randint(0, 48, (32, 6), generator=torch.Generator().manual_seed(0))
    tags = (ids % 5).long()
    ce = lambda logits, y: F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1))  # noqa: E731
    tagging = Workload(name="tags", train=(ids, tags), val=(ids, tags), test=(ids, tags), make_model=Tagger,
                       loss_fn=ce, metric="loss")
    torch.manual_seed(0)
    layout = layout_of(tagging, Tagger(), example_batch(tagging), "teacher")
    assert (layout.per, layout.shift) == ("token", False)
    smoothed = Workload(name="smooth", train=(ids, tags), val=(ids, tags), test=(ids, tags), make_model=Tagger,
                        loss_fn=lambda o, y: F.cross_entropy(o.reshape(-1, 5), y.reshape(-1), label_smoothing=0.3),
                        metric="loss")
    with pytest.raises(UsageError, match=r"smooth: its loss on a batch .* is not the token cross entropy") as info:
        layout_of(smoothed, Tagger(), example_batch(smoothed), "teacher")
    assert "\n" not in str(info.value)
    regression_like = Workload(name="floats", train=(ids, tags.float()), val=(ids, tags.float()),
                               test=(ids, tags.float()), make_model=Tagger, loss_fn=ce, metric="loss")
    with pytest.raises(UsageError, match="floats: the targets are torch.float32 values, expected integer"):
        layout_of(regression_like, Tagger(), example_batch(regression_like), "teacher")


def test_layers_n_is_the_hugging_face_model_with_n_layers():
    from tests.realmodels import gpt2

    wl = gpt2(dtype="float64")
    make = resolve_arch("layers=1", wl)
    torch.manual_seed(3)
    a = make()
    torch.manual_seed(3)
    b = make()
    assert type(a).__name__ == "GPT2LMHeadModel" and a.config.n_layer == 1 and len(a.transformer.h) == 1
    assert a.lm_head.weight is a.transformer.wte.weight  # tied, as the workload's model
    assert all(p.dtype == torch.float64 for p in a.parameters())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # from the global generator
    assert default_student(wl) == "layers=1" and default_student(wl, _gpt2(4)) == "layers=2"
    with pytest.raises(UsageError, match=r"architecture 'layers=2' needs a Hugging Face model .* toy's model "
                                         r"Sequential has none"):
        resolve_arch("layers=2", _workload())
    with pytest.raises(UsageError, match="sizes must be integers >= 1"):
        resolve_arch("layers=0", wl)
    with pytest.raises(UsageError, match=r"architecture 'cnn-4' needs one tensor of inputs, and gpt2-tiny-float64's "
                                         r"batches are dicts \(input_ids, labels\): use layers=N"):
        resolve_arch("cnn-4", wl)


def test_no_default_student_for_a_dict_model_without_a_config_says_what_to_pass():
    from tests.realmodels import TokenSet, _markov_tokens

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(48, 48)

        def forward(self, input_ids):
            return self.embed(input_ids)

    ids = _markov_tokens(64, 0)
    wl = Workload(name="plain-lm", train=TokenSet(ids), val=TokenSet(ids), test=TokenSet(ids), make_model=Plain,
                  metric="loss", loss_fn=lambda o, y: F.cross_entropy(o[:, :-1].reshape(-1, 48), y[:, 1:].reshape(-1)))
    with pytest.raises(UsageError, match=r"no default student for plain-lm: its model Plain outputs per-token logits "
                                         r"and has no Hugging Face config .* pass --student layers=N .* or --student "
                                         r"path/to/file.py:FUNC") as info:
        default_student(wl, per="token")
    assert "\n" not in str(info.value)


def test_the_builtin_charlm_is_distilled_per_token_unshifted_with_a_half_depth_student():
    from descentlab import workloads

    wl = workloads.load("charlm")  # (x, y) tensors, y = x shifted already; nanoGPT-style model.cfg
    torch.manual_seed(0)
    teacher = wl.make_model()
    layout = layout_of(wl, teacher, example_batch(wl, 4), "teacher")
    assert (layout.per, layout.shift) == ("token", False)
    n = teacher.cfg.n_layer
    assert default_student(wl, teacher, per="token") == f"layers={n // 2}"
    student = resolve_arch(f"layers={n // 2}", wl)()
    assert type(student) is type(teacher) and len(student.blocks) == n // 2 and student.cfg.n_embd == teacher.cfg.n_embd
