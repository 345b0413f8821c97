"""``charlm-tiny``: a tiny character-level decoder-only transformer language model.

Stands for AlgoPerf's language-model workloads (Dahl et al. 2023, "Benchmarking Neural
Network Training Algorithms", §4: the WMT Transformer, and the decoder-only language
model of AlgoPerf's 2025 edition; the nanoGPT speedruns measure the same):
next-token prediction with a causal transformer, where Adam-type methods, warmup and
the lr matter most. It is :mod:`..charlm` made small enough for a run in seconds.

* Data (see :mod:`..text`): the first :data:`CORPUS_CHARS` characters of the pinned torch
  package's Python sources (files in sorted order; another torch version gives another
  text, ``info`` records its SHA-256), split contiguously 90/5/5; the training split's
  characters as the vocabulary plus an unknown id; training windows of :data:`MODEL`
  ``block_size`` characters at seeded random start positions (the seed chooses them),
  the first :data:`VAL_WINDOWS` consecutive validation windows, all test windows.
* Model (:class:`..transformer.GPT`, untied head, GPT-2 initialisation): :data:`MODEL`,
  2 pre-norm blocks of width 48 with 2 heads, context 32 characters; 67,776 parameters
  with the 100-character vocabulary. Its MLPs use ``nn.GELU`` modules, so a variant can
  swap them.
* Metric ``bpc``: bits per character on the validation windows (lower is better);
  ``info["unigram_bpc"]`` is what knowing only the character frequencies gives.
* Recipe: see :data:`RECIPE` and the measurements next to it.
* Held-out variant: ``activation: relu`` (the original Transformer's, Vaswani et al.
  2017). At the recipe, seed 0: final validation bpc 2.707 (GELU: 2.836).
"""

from __future__ import annotations

import os

from ..base import Workload
from ..recipes import lr_defaults, recipe
from ..registry import register

MODEL = {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 48}
CORPUS_CHARS = 300_000
VAL_WINDOWS = 128
BATCH_SIZE = 32

# Measured on one core (OMP_NUM_THREADS=1), seed 0, 500 steps of batch 32, 20 evaluations;
# best validation bpc (unigram: 4.71). Sizes: 2 blocks of width 64, batch 16, 600 steps:
# 3.02 in the same time; width 32, batch 64, 400 steps: 2.79 at lr 1e-2. lr sweeps at a
# constant lr: adam 3e-4 / 1e-3 / 3e-3 / 1e-2 -> 3.654 / 3.103 / 2.828 / 3.707; momentum
# 0.01 / 0.03 / 0.1 / 0.2 / 0.3 / 1.0 -> 3.619 / 3.494 / 3.357 / 3.128 / 3.241 / diverged;
# sgd 0.5 / 1.0 -> 3.562 / diverged. Anchors: adam 3e-3, momentum 0.1 (0.2-0.3 are better,
# but sgd at 5m would then be 1.0, which diverges). The classic optimizers at these
# defaults (constant lr): sgd 0.5 3.562, momentum 3.357, nesterov 3.187, adagrad 0.03
# 3.625, rmsprop 1.5e-3 3.470, adam 2.828, adamw 2.813: all train, Adam and AdamW far
# ahead. No run is near convergence: the bpc falls steadily to the end of the budget.
# Recipe: AdamW 3e-3, weight decay 0.05, 25 warmup steps, WSD with the last 20% decayed
# linearly to 0 (as charlm): final validation bpc 2.836 / 2.789 / 2.786 at seeds 0 / 1 / 2
# (constant 3e-3: 2.828 at seed 0; WSD at 5e-3: 2.784); 7-9 s of CPU a run.
RECIPE = recipe("adamw", 3e-3, batch_size=BATCH_SIZE, steps=500, weight_decay=0.05,
                schedule="wsd", schedule_kwargs={"warmup_steps": 25, "stable_steps": 380, "decay_steps": 95})
LRS = lr_defaults(adam=3e-3, momentum=0.1)


def build(seed: int, *, model: dict | None = None, corpus_chars: int = CORPUS_CHARS,
          val_windows: int = VAL_WINDOWS) -> Workload:
    """The workload (``model``/``corpus_chars``/``val_windows`` override the defaults)."""
    import torch

    from .. import text
    from ..transformer import GPT, GPTConfig, SequenceCrossEntropy

    cfg = {**MODEL, **(model or {})}
    block = cfg["block_size"]
    corpus, info = text.torch_sources(corpus_chars)
    train_text, val_text, test_text = text.split_text(corpus, block)
    vocab = text.Vocabulary(train_text)
    ids = [vocab.encode(t) for t in (train_text, val_text, test_text)]
    train = text.random_windows(ids[0], block, seed)
    val = text.consecutive_windows(ids[1], block, val_windows)
    test = text.consecutive_windows(ids[2], block)
    gpt = GPTConfig(vocab_size=len(vocab), **cfg)
    with torch.random.fork_rng(devices=[]):  # counting parameters draws no global numbers
        parameters = sum(p.numel() for p in GPT(gpt).parameters())
    return Workload(
        name="charlm-tiny",
        description=(f"tiny character-level transformer LM ({cfg['n_layer']} blocks, width {cfg['n_embd']}, "
                     f"context {block}) on {corpus_chars:,} characters of the torch sources; bpc"),
        train=train, val=val, test=test,
        make_model=lambda: GPT(gpt),
        loss_fn=SequenceCrossEntropy(),
        metric="bpc",
        recipe=dict(RECIPE),
        lr_defaults=LRS,
        seed=seed,
        info={
            **info,
            "characters": len(corpus),
            "sha256": text.digest(corpus),
            "unigram_bpc": text.unigram_bits(corpus),
            "vocabulary": len(vocab),
            "split_characters": {"train": len(train_text), "val": len(val_text), "test": len(test_text)},
            "windows": {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])},
            "model": {**cfg, "parameters": parameters, "tied_head": False},
            "stands_for": "AlgoPerf language-model workloads (WMT Transformer; 2025: decoder-only LM), nanoGPT",
        },
    )


@register("charlm-tiny", "tiny character-level transformer LM on 300k characters of the torch sources (AlgoPerf LM family); bpc")
def charlm_tiny(seed: int, data_dir: str | os.PathLike | None = None) -> Workload:
    return build(seed)
