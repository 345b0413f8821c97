"""descentlab optimizers and schedules under Lightning's own Trainer.

A LightningModule whose ``configure_optimizers`` returns ``optim.create(...)``
and ``schedules.create(...)`` (an lr_scheduler dict, interval "step") is
trained on CPU, checkpointed by Lightning's ModelCheckpoint, and resumed with
``fit(ckpt_path=..., weights_only=True)``: the resumed run ends with the
parameters, optimizer state and schedule of an uninterrupted run of the same
total steps, bit for bit.

The checkpoint is taken at an epoch boundary: Lightning resumes a mid-epoch
checkpoint by restarting that epoch's data from its first batch (unless the
data loader is stateful), which is Lightning's behaviour, not the optimizer's.

Schedule-free AdamW must be in train mode to step and in eval mode to be
evaluated; Lightning does not call ``optimizer.train()``/``eval()`` itself,
so the module does in its hooks (as schedulefree's documentation advises).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from descentlab import optim, schedules
from tests.ecosystem import assert_same_optimizer_state

BATCHES_PER_EPOCH = 4
EPOCHS = 4  # the uninterrupted run; the interrupted one stops after 2
TOTAL_STEPS = BATCHES_PER_EPOCH * EPOCHS

CASES = [
    # (optimizer, hyperparameters): momentum only; Adam's two moments; sign
    # momentum; Muon (2-D weights) + AdamW (biases); schedule-free's z and clock
    ("adamw", {"lr": 1e-2, "weight_decay": 0.01}),
    ("lion", {"lr": 1e-3, "weight_decay": 0.1}),
    ("muon", {"lr": 2e-2, "adamw_lr": 1e-2}),
    ("adamw_schedulefree", {"lr": 1e-2, "warmup_steps": 2}),
]

pytestmark = [
    # Lightning 2.6.6's own use of a torch 2.13 deprecation, not ours
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8 * BATCHES_PER_EPOCH, 5, generator=g)
    y = torch.sin(x[:, :3]) + 0.1 * torch.randn(len(x), 3, generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    # No shuffling: each epoch sees the same batches, so a resumed epoch is the
    # uninterrupted run's (Lightning does not save the global RNG state).
    return torch.utils.data.DataLoader(data, batch_size=8, shuffle=False)


class Regression(L.LightningModule):
    def __init__(self, name: str, hparams: dict):
        super().__init__()
        self.name, self.opt_hparams = name, hparams
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        opt = optim.create(self.name, self.parameters(), **self.opt_hparams)
        sched = schedules.create("warmup_cosine", opt, warmup_steps=3, total_steps=TOTAL_STEPS, min_lr=1e-4)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # Schedule-free: train mode to step, eval mode to evaluate (no-ops for the others).
    def on_train_epoch_start(self):
        self.trainer.optimizers[0].train()

    def on_validation_epoch_start(self):
        self.trainer.optimizers[0].eval()

    def on_validation_epoch_end(self):
        self.trainer.optimizers[0].train()


def _trainer(tmp_path, epochs, callbacks=()):
    return L.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=bool(callbacks), callbacks=list(callbacks),
        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
    )


def _fit(tmp_path, name, hparams, epochs, ckpt_path=None, callbacks=()):
    module = Regression(name, hparams)
    trainer = _trainer(tmp_path, epochs, callbacks)
    trainer.fit(module, train_dataloaders=_loader(), ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    return module, trainer


@pytest.mark.parametrize("name,hparams", CASES, ids=[c[0] for c in CASES])
def test_resume_from_a_lightning_checkpoint_equals_the_uninterrupted_run(tmp_path, name, hparams):
    whole, whole_trainer = _fit(tmp_path / "whole", name, hparams, EPOCHS)
    assert whole_trainer.global_step == TOTAL_STEPS

    checkpoints = tmp_path / "checkpoints"
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoints, every_n_epochs=1, save_top_k=-1)
    first, first_trainer = _fit(tmp_path / "first", name, hparams, EPOCHS // 2, callbacks=[saver])
    assert first_trainer.global_step == TOTAL_STEPS // 2
    ckpt = max(checkpoints.glob("*.ckpt"))  # epoch=1-step=8.ckpt
    assert f"step={TOTAL_STEPS // 2}" in ckpt.name

    # The resumed trainer has the checkpoint callback too, as Lightning asks,
    # writing into the same folder (Lightning warns that it is not empty).
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoints, every_n_epochs=1, save_top_k=-1)
    resumed, resumed_trainer = _fit(tmp_path / "resumed", name, hparams, EPOCHS, ckpt, [saver])
    assert resumed_trainer.global_step == TOTAL_STEPS

    got, halfway = dict(resumed.named_parameters()), dict(first.named_parameters())
    for key, want in whole.named_parameters():
        torch.testing.assert_close(got[key], want, rtol=0, atol=0, msg=f"{name}: {key}")
        assert not torch.equal(got[key], halfway[key]), "the resumed run did not train"

    opt, ref = resumed_trainer.optimizers[0], whole_trainer.optimizers[0]
    assert type(opt) is type(ref) and opt.name == name
    assert_same_optimizer_state(opt, ref, resumed.parameters(), whole.parameters())
    sched = resumed_trainer.lr_scheduler_configs[0].scheduler
    ref_sched = whole_trainer.lr_scheduler_configs[0].scheduler
    assert sched.state_dict() == ref_sched.state_dict()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]

    # Schedule-free: evaluated at the averaged point x, the same in both runs.
    opt.eval()
    ref.eval()
    for key, value in dict(whole.named_parameters()).items():
        torch.testing.assert_close(dict(resumed.named_parameters())[key], value, rtol=0, atol=0)
