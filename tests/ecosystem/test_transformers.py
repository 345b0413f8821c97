"""descentlab optimizers and schedules under Hugging Face's ``transformers.Trainer``.

A 2-layer GPT-2 built from a config (no download: random weights, token ids
made with torch) is trained with ``optimizers=(optim.create(...),
schedules.create(...))``; the Trainer saves its own checkpoints (model,
``optimizer.pt``, ``scheduler.pt``, RNG states), and a fresh Trainer resumed
with ``train(resume_from_checkpoint=...)`` ends with the parameters, optimizer
state and schedule of the uninterrupted run, bit for bit. The Trainer loads
``optimizer.pt`` and ``scheduler.pt`` with ``torch.load(weights_only=True)``,
so this also proves descentlab's state dicts are weights_only-loadable.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from descentlab import optim, schedules
from tests.ecosystem import assert_same_optimizer_state

STEPS = 8
SAVE_EVERY = 4
CASES = [
    ("adamw", {"lr": 3e-3, "weight_decay": 0.01}),
    ("muon", {"lr": 2e-2, "adamw_lr": 3e-3}),  # Muon on the 2-D weights, AdamW on the rest
]


def _model():
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # no dropout: nothing random in a step
    )
    transformers.set_seed(0)
    return transformers.GPT2LMHeadModel(config)


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the model learns their (unigram) statistics."""

    def __init__(self, n=64, length=12, vocab=64):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab // 2, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(output_dir, name, hparams):
    model = _model()
    opt = optim.create(name, model.parameters(), **hparams)
    sched = schedules.create("warmup_cosine", opt, warmup_steps=2, total_steps=STEPS, min_lr=1e-4)
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), max_steps=STEPS, per_device_train_batch_size=8,
        save_strategy="steps", save_steps=SAVE_EVERY, logging_steps=1,
        report_to=[], use_cpu=True, dataloader_num_workers=0, seed=0, data_seed=0, disable_tqdm=True,
    )
    return transformers.Trainer(model=model, args=args, train_dataset=Tokens(), optimizers=(opt, sched))


def _losses(trainer) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


@pytest.mark.parametrize("name,hparams", CASES, ids=[c[0] for c in CASES])
def test_resume_from_a_transformers_checkpoint_equals_the_uninterrupted_run(tmp_path, name, hparams):
    whole = _trainer(tmp_path / "run", name, hparams)
    whole.train()
    assert whole.state.global_step == STEPS
    checkpoint = tmp_path / "run" / f"checkpoint-{SAVE_EVERY}"
    for file in ("optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (checkpoint / file).is_file(), file
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert saved["state"], "the checkpoint holds the optimizer's state"

    resumed = _trainer(tmp_path / "resumed", name, hparams)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == STEPS

    got = dict(resumed.model.named_parameters())
    for key, want in whole.model.named_parameters():
        torch.testing.assert_close(got[key], want, rtol=0, atol=0, msg=f"{name}: {key}")

    opt, ref = resumed.optimizer.optimizer, whole.optimizer.optimizer  # accelerate wraps them
    assert isinstance(opt, optim.ChainOptimizer) and opt.name == name
    assert_same_optimizer_state(opt, ref, resumed.model.parameters(), whole.model.parameters())
    assert resumed.lr_scheduler.state_dict() == whole.lr_scheduler.state_dict()
    # the log (restored from trainer_state.json for steps 1-4) has the uninterrupted run's losses
    assert _losses(resumed) == _losses(whole)
    assert sorted(_losses(whole)) == list(range(1, STEPS + 1))
