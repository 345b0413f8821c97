"""TensorBoardLogger: the event files, read back with TensorBoard's own reader,
hold exactly the Trainer's History (tags, steps, values), also across a resume."""

from __future__ import annotations

import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from descentlab import optim, schedules
from descentlab.train import Callback, Trainer
from descentlab.train.tensorboard import AXES, TensorBoardLogger

STEPS = 10


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=g)
    return (x[:48], y[:48]), (x[48:], y[48:])


def _trainer(callbacks, checkpoint_dir=None, resume=False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = optim.create("adamw", model.parameters(), lr=0.05)
    sched = schedules.create("warmup_cosine", opt, warmup_steps=3, total_steps=STEPS)
    return Trainer(
        model, opt, torch.nn.MSELoss(), scheduler=sched, callbacks=callbacks, batch_size=8,
        clip={"norm": 1.0}, eval_every=3, device="cpu", seed=0,
        checkpoint_dir=checkpoint_dir, checkpoint_every=4 if checkpoint_dir else None, resume=resume,
    )


def _read(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(history) -> dict[str, list[tuple[int, float]]]:
    """The History's rows as series: column -> [(step, value as float32)]."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in history.rows:
        for key, value in row.items():
            if key not in AXES:
                # TensorBoard stores a scalar as float32
                series.setdefault(key, []).append((row["step"], float(torch.tensor(float(value), dtype=torch.float32))))
    return series


def test_event_files_equal_the_history(tmp_path):
    train, val = _data()
    trainer = _trainer([TensorBoardLogger(tmp_path, run_name="adamw")])
    history = trainer.fit(train, val, max_steps=STEPS)
    events = _read(tmp_path / "adamw")
    expected = _expected(history)
    assert set(events) == {"train_loss", "lr", "grad_norm", "val_loss"}
    assert events == expected
    assert [s for s, _ in events["train_loss"]] == list(range(1, STEPS + 1))
    assert [s for s, _ in events["val_loss"]] == [3, 6, 9, 10]


class _Crash(Callback):
    """Stops the fit with an error after step ``at`` (after the last checkpoint)."""

    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, logs):
        if trainer.step == self.at:
            raise KeyboardInterrupt(f"interrupted at step {self.at}")


def test_a_resumed_run_does_not_duplicate_steps(tmp_path):
    train, val = _data()
    whole = _trainer([]).fit(train, val, max_steps=STEPS)

    logs, checkpoints = tmp_path / "tb", tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):  # the last checkpoint is step 4; steps 5-6 are logged
        _trainer([TensorBoardLogger(logs), _Crash(6)], checkpoints).fit(train, val, max_steps=STEPS)
    interrupted = _read(logs)
    assert [s for s, _ in interrupted["train_loss"]] == [1, 2, 3, 4, 5, 6]
    # Event files are named by the second they were opened in; the reader reads
    # them in name order, so the resumed run's file must be a later second.
    time.sleep(1.05 - time.time() % 1)
    resumed_trainer = _trainer([TensorBoardLogger(logs), _Crash(-1)], checkpoints, resume=True)
    history = resumed_trainer.fit(train, val, max_steps=STEPS)

    events = _read(logs)
    assert [s for s, _ in events["train_loss"]] == list(range(1, STEPS + 1)), "steps 5 and 6 once each"
    assert events == _expected(history)
    # and the resumed History is the uninterrupted run's, so the events are too
    assert events == _expected(whole)


def test_logger_state_and_arguments(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    assert logger.state_dict() == {}
    assert logger.log_dir == tmp_path
    assert TensorBoardLogger(tmp_path, run_name="sgd-seed0").log_dir == tmp_path / "sgd-seed0"
    with pytest.raises(ValueError, match="invalid run_name=''"):
        TensorBoardLogger(tmp_path, run_name="")
    with pytest.raises(ValueError, match="invalid flush_secs=0"):
        TensorBoardLogger(tmp_path, flush_secs=0)
