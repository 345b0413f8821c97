"""Gradual pruning: Zhu & Gupta's cubic schedule, as a Trainer callback."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descentlab import Trainer, optim
from descentlab.compress import GradualPruning, cubic_sparsity, sparsity_of
from descentlab.compress.magnitude import prunable
from descentlab.workloads.models import ConvNet1d


def test_cubic_schedule_is_zhu_and_gupta_eq_1():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3
    s_i, s_f, t0, end = 0.1, 0.9, 100, 1100
    for t in (100, 350, 600, 850, 1100):
        expected = s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0)) ** 3
        assert cubic_sparsity(t, final=s_f, start=t0, end=end, initial=s_i) == pytest.approx(expected)
    assert cubic_sparsity(0, final=s_f, start=t0, end=end, initial=s_i) == s_i
    assert cubic_sparsity(5000, final=s_f, start=t0, end=end, initial=s_i) == s_f
    # fast first: half the window reaches 7/8 of the way
    assert cubic_sparsity(600, final=0.8, start=100, end=1100) == pytest.approx(0.8 * 7 / 8)
    with pytest.raises(ValueError, match="end=100 must come after start=100"):
        cubic_sparsity(10, final=0.5, start=100, end=100)


def test_callback_prunes_on_the_schedule_and_keeps_pruned_weights_zero():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 40, generator=g), torch.randint(0, 10, (400,), generator=g)
    torch.manual_seed(0)
    model = ConvNet1d(40, 10, channels=8)
    opt = optim.create("momentum", model.parameters(), lr=0.05, weight_decay=1e-3)
    zeros_at: dict[int, dict[str, torch.Tensor]] = {}

    class Watch(GradualPruning.__mro__[1]):  # a plain Callback, after the pruning one
        def on_step_end(self, trainer, logs):
            zeros_at[trainer.step] = {n: (m.weight == 0).clone() for n, m in prunable(trainer.model)}

    cb = GradualPruning(0.75, start=10, end=50, frequency=10)
    Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[cb, Watch()], batch_size=50, seed=0).fit((x, y), max_steps=80)
    assert [h["step"] for h in cb.history] == [20, 30, 40, 50]  # at t0 the target is still s_i = 0
    for h in cb.history:
        assert h["sparsity"] == pytest.approx(cubic_sparsity(h["step"], final=0.75, start=10, end=50), abs=2e-3)
    # once pruned, a weight stays exactly zero at every later step
    for step in range(21, 81):
        for n, now in zeros_at[step].items():
            assert torch.all(now[zeros_at[step - 1][n]]), (step, n)
    assert not any(hasattr(m, "weight_orig") for _, m in prunable(model))  # made permanent at the end
    assert sparsity_of(model) == pytest.approx(0.75, abs=2e-3)


@pytest.mark.parametrize("kw, words", [({"sparsity": 1.0}, "sparsity=1.0"), ({"sparsity": 0.5, "frequency": 0},
                                                                                "frequency=0")])
def test_bad_settings_are_refused(kw, words):
    with pytest.raises(ValueError, match=words):
        GradualPruning(**kw)


def test_copy_run_shares_no_state_with_the_run_it_copies():
    from descentlab.compress.fit import Fitted, copy_run, plan_for

    plan = plan_for("mnist1d-cnn", seed=0, steps=10)
    torch.manual_seed(0)
    model = plan["workload"].make_model()
    opt = optim.create("adam", model.parameters(), lr=1e-3)
    x, y = plan["workload"].train
    nn.functional.cross_entropy(model(x[:50]), y[:50]).backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[next(model.parameters())].items() if torch.is_tensor(v)}
    copy_model, copy_opt = copy_run(Fitted(model, opt, None), plan)
    for _ in range(3):
        copy_opt.zero_grad()
        nn.functional.cross_entropy(copy_model(x[:50]), y[:50]).backward()
        copy_opt.step()
    after = opt.state[next(model.parameters())]
    assert all(torch.equal(after[k], v) for k, v in before.items())
