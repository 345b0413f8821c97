"""The Trainer: batching modes, accumulation, early stopping, non-finite losses,
checkpoints and exact resume (in process; the SIGKILL test is in tests/cli)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descentlab import optim
from descentlab.train import Callback, Diagnostics, EarlyStopping, NonFiniteLossError, Trainer
from descentlab.train import checkpoint as ckpt


def regression_data(n=96, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.arange(1.0, d + 1) + 0.1 * torch.randn(n, generator=g)
    return x, y.unsqueeze(1)


def make(seed=0, lr=0.05, opt="sgd", **options):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = optim.create(opt, model.parameters(), lr=lr)
    options.setdefault("device", "cpu")
    return Trainer(model, optimizer, nn.MSELoss(), seed=seed, **options)


def params_of(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("batch_size,steps", [("full", 3), (1, 3 * 96), (32, 9), (40, 9)])
def test_batch_size_selects_batch_stochastic_or_minibatch_descent(batch_size, steps):
    t = make(batch_size=batch_size)
    t.fit(regression_data(), epochs=3)
    assert t.step == steps


def test_training_lowers_the_loss():
    data = regression_data()
    t = make(batch_size=16)
    before = t.evaluate(data)["loss"]
    t.fit(data, epochs=5)
    assert t.evaluate(data)["loss"] < 0.2 * before


def test_gradient_accumulation_equals_the_larger_batch():
    data = regression_data()
    a = make(batch_size=16, accumulate=2)
    b = make(batch_size=32)
    a.fit(data, epochs=2)
    b.fit(data, epochs=2)
    assert a.step == b.step == 6
    # Same data order is not guaranteed across batch sizes; compare on a fixed order.
    x, y = data
    a2, b2 = make(batch_size=16, accumulate=2), make(batch_size=32)
    for t in (a2, b2):
        t.batch_size = None
    a2.fit([(x[i : i + 16], y[i : i + 16]) for i in range(0, 96, 16)], epochs=1)
    b2.fit([(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)], epochs=1)
    for p, q in zip(params_of(a2), params_of(b2)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


class ScriptedValidation(Callback):
    """Replace the validation loss by a constructed curve and record the weights at each evaluation."""

    def __init__(self, curve):
        self.curve = list(curve)
        self.snapshots = []

    def on_fit_start(self, trainer):
        calls = iter(self.curve)
        original = trainer.evaluate

        def scripted(data, batch_size=1000):
            result = original(data, batch_size)
            result["loss"] = next(calls)
            self.snapshots.append(params_of(trainer))
            return result

        trainer.evaluate = scripted


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights():
    curve = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0]  # best at epoch 3, then 3 without improvement
    script = ScriptedValidation(curve)
    t = make(batch_size=32, callbacks=[script, EarlyStopping(monitor="val_loss", patience=3)])
    data = regression_data()
    t.fit(data, data, epochs=8)
    assert t.stop_reason == "early_stopping"
    assert t.epoch == 6 and t.step == 6 * 3
    assert t.best.step == 9 and t.best.value == 3.0
    for p, best in zip(params_of(t), script.snapshots[2]):
        assert torch.equal(p, best)


def test_min_delta_counts_small_gains_as_no_improvement():
    script = ScriptedValidation([5.0, 4.99, 4.98, 4.97, 1.0])
    t = make(batch_size=32, callbacks=[script, EarlyStopping(patience=2, min_delta=0.1)])
    data = regression_data()
    t.fit(data, data, epochs=5)
    assert t.stop_reason == "early_stopping" and t.epoch == 3


def test_best_weights_are_restored_when_the_budget_ends_training():
    script = ScriptedValidation([3.0, 1.0, 2.0, 4.0])
    t = make(batch_size=32, callbacks=[script, EarlyStopping(patience=10)])
    data = regression_data()
    t.fit(data, data, epochs=4)
    assert t.stop_reason == "epochs"
    for p, best in zip(params_of(t), script.snapshots[1]):
        assert torch.equal(p, best)


def test_nan_loss_raises_naming_the_step():
    t = make(lr=1e6, batch_size=16)
    with pytest.raises(NonFiniteLossError, match=r"the loss became (nan|inf) at step \d+ \(epoch 1\)"):
        t.fit(regression_data(), epochs=3)


def test_skip_skips_poisoned_batches_and_keeps_training():
    x, y = regression_data()
    y = y.clone()
    y[:16] = float("nan")  # the first batch (fixed order below) is poisoned
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 96, 16)]
    t = make(on_nonfinite="skip")
    t.fit(batches, epochs=2)
    assert t.skipped == 2 and t.step == 10
    assert all(torch.isfinite(p).all() for p in t.model.parameters())


def test_skip_gives_up_when_training_diverges():
    t = make(lr=1e6, batch_size=16, on_nonfinite="skip", max_skips=3)
    with pytest.raises(NonFiniteLossError, match="non-finite for 3 steps in a row"):
        t.fit(regression_data(), epochs=5)


def test_the_best_checkpoint_is_never_overwritten_by_a_non_finite_model(tmp_path):
    torch.manual_seed(0)
    data = regression_data()
    t = make(batch_size=16, checkpoint_dir=str(tmp_path), checkpoint_every=3, eval_every=2)
    # lr explodes after step 8: the model diverges
    t.scheduler = torch.optim.lr_scheduler.LambdaLR(t.optimizer, lambda s: 1.0 if s < 8 else 1e8)
    with pytest.raises(NonFiniteLossError):
        t.fit(data, data, epochs=10)
    best = ckpt.safe_load(tmp_path / "best.pt")
    assert best["step"] <= 8
    assert all(torch.isfinite(v).all() for v in best["model"].values())
    state, _ = ckpt.load_latest(tmp_path)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


class Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, logs):
        if trainer.step == self.at:
            raise KeyboardInterrupt


# soap refreshes its eigenbasis at steps 10, 20, 30, 40 and shampoo its roots (from
# step 25) at 30 and 40: the resumed run from step 20 crosses updates; kron draws its
# update steps and probes from generators whose states are in the checkpoint.
@pytest.mark.parametrize("opt", ["adamw", "momentum", "soap", "shampoo", "kron"])
def test_resume_mid_epoch_is_exact(tmp_path, opt):
    data = regression_data()
    kw = dict(opt=opt, lr=0.01, batch_size=10, eval_every=4, checkpoint_every=5)
    full = make(**kw, callbacks=[EarlyStopping(patience=50)])
    full.scheduler = torch.optim.lr_scheduler.StepLR(full.optimizer, 7, 0.5)
    full.fit(data, data, epochs=4)

    first = make(**kw, checkpoint_dir=str(tmp_path), callbacks=[EarlyStopping(patience=50), Crash(at=23)])
    first.scheduler = torch.optim.lr_scheduler.StepLR(first.optimizer, 7, 0.5)
    with pytest.raises(KeyboardInterrupt):
        first.fit(data, data, epochs=4)  # dies at step 23, mid-epoch 3; last checkpoint at 20

    second = make(**kw, checkpoint_dir=str(tmp_path), resume=True, callbacks=[EarlyStopping(patience=50)])
    second.scheduler = torch.optim.lr_scheduler.StepLR(second.optimizer, 7, 0.5)
    second.fit(data, data, epochs=4)
    assert second.step == full.step == 40
    for p, q in zip(params_of(second), params_of(full)):
        assert torch.equal(p, q)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(second.history.rows) == strip(full.history.rows)


def test_diagnostics_log_gradient_norm_and_update_ratios():
    t = make(batch_size=16, callbacks=[Diagnostics(every=2)])
    t.fit(regression_data(), epochs=1)
    steps, ratios = t.history.series("update_ratio")
    assert steps == [2, 4, 6]
    assert all(0 < r < 1 for r in ratios)
    _, norms = t.history.series("grad_norm")
    assert all(n > 0 and math.isfinite(n) for n in norms)
    assert any(k.startswith("update_ratio/0.weight") for k in t.history.columns())


class DirectDiagnostics(Callback):
    """What Diagnostics logs, computed tensor by tensor with torch's norms."""

    def __init__(self):
        self.grad_norms, self.ratios, self._before = [], [], None

    def on_before_step(self, trainer):
        grads = [p.grad for p in trainer.model.parameters()]
        self.grad_norms.append(float(torch.nn.utils.get_total_norm(grads)))
        self._before = [p.detach().clone() for p in trainer.model.parameters()]

    def on_step_end(self, trainer, logs):
        after = [p.detach() for p in trainer.model.parameters()]
        self.ratios.append([float((a - b).norm() / a.norm()) for a, b in zip(after, self._before)])


def test_diagnostics_equal_torch_norms_tensor_by_tensor():
    direct = DirectDiagnostics()
    t = make(batch_size=16, opt="adamw", callbacks=[Diagnostics(every=1), direct])
    t.fit(regression_data(), epochs=1)
    _, norms = t.history.series("grad_norm")
    assert norms == pytest.approx(direct.grad_norms, rel=1e-6)
    names = [n for n, _ in t.model.named_parameters()]
    for i, name in enumerate(names):
        _, ratios = t.history.series(f"update_ratio/{name}")
        assert ratios == pytest.approx([r[i] for r in direct.ratios], rel=1e-5)


def test_clip_by_norm_reports_the_norm_before_clipping():
    t = make(batch_size=16, clip={"norm": 0.01})
    t.fit(regression_data(), epochs=1)
    _, norms = t.history.series("grad_norm")
    assert len(norms) == 6 and all(n > 0.01 for n in norms)


def test_bf16_autocast_trains_on_cpu():
    data = regression_data()
    t = make(batch_size=16, precision="bf16")
    before = t.evaluate(data)["loss"]
    t.fit(data, epochs=3)
    assert t.evaluate(data)["loss"] < before


def test_plateau_schedule_is_stepped_with_the_validation_value():
    t = make(batch_size=32)
    t.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(t.optimizer, patience=0, factor=0.5)
    script = ScriptedValidation([1.0, 2.0, 3.0])
    t.callbacks.append(script)
    data = regression_data()
    t.fit(data, data, epochs=3)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.25)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"batch_size": 0}, r"invalid batch_size=0"),
        ({"accumulate": 0}, r"invalid accumulate=0"),
        ({"precision": "fp8"}, r"invalid precision='fp8'"),
        ({"precision": "fp16"}, r"fp16 needs a GPU"),
        ({"on_nonfinite": "ignore"}, r"invalid on_nonfinite='ignore'"),
        ({"clip": {"norm": -1.0}}, r"invalid clip norm=-1\.0"),
        ({"clip": {"l2": 1.0}}, r"invalid clip key\(s\) \['l2'\]"),
        ({"resume": True}, r"resume=True needs a checkpoint_dir"),
        ({"device": "cuda:7"}, r"invalid device"),
    ],
)
def test_invalid_options(options, message):
    if options.get("device") and torch.cuda.is_available():
        pytest.skip(reason="this machine has CUDA, so the device exists")
    with pytest.raises(ValueError, match=message):
        make(**options)


def test_invalid_fit_budget():
    with pytest.raises(ValueError, match=r"invalid epochs=-1"):
        make(batch_size=8).fit(regression_data(), epochs=-1)
    with pytest.raises(ValueError, match="needs epochs= or max_steps="):
        make(batch_size=8).fit(regression_data())


def test_a_tensor_lr_is_logged_as_the_value_of_each_step():
    """A 0-dim tensor lr changed in place by a schedule: each History row holds
    that step's value as a float (not the one shared tensor)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = optim.create("sgd", model.parameters(), lr=torch.tensor(0.1, dtype=torch.float64))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    trainer = Trainer(model, opt, torch.nn.MSELoss(), scheduler=sched, batch_size=32)
    trainer.fit((x, y), max_steps=4)
    lrs = [row["lr"] for row in trainer.history.rows if "lr" in row]
    # the row of step t holds the lr after the schedule's step (as with a float lr)
    assert lrs == [0.05, 0.025, 0.0125, 0.00625] and all(type(v) is float for v in lrs)
