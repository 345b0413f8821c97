"""``charlm``: a character-level decoder-only transformer language model.

Where modern optimizers differ: AdamW, Lion, Muon, Adafactor, schedule-free
and Prodigy are chosen for transformers, and the best-known optimizer
benchmarks (AlgoPerf's language tasks, the nanoGPT speedruns) are language
models. This one trains on one CPU core in about two minutes.

* Data (see :mod:`.text`): the Python sources of the pinned torch package
  (2,000,000 characters, sorted file order) or ``--data-dir DIR`` with
  ``DIR/input.txt``; contiguous 90/5/5 split; the vocabulary of the training
  split plus an unknown id; training windows at seeded random positions;
  at most :data:`VAL_WINDOWS` validation windows (evaluation cost), all test windows.
* Model (see :mod:`.transformer`): :data:`MODEL` — 3 pre-norm blocks, 4 heads,
  width 96, context 64 characters, untied head; about 0.36M parameters.
* Metric ``bpc``: bits per character (the mean cross-entropy in nats / ln 2),
  lower is better. ``info["unigram_bpc"]`` is the corpus's unigram entropy:
  the bpc of a model that knows only character frequencies.
* Muon: the embeddings, the output head and every non-2-D parameter on its
  AdamW part (:func:`descentlab.optim.muon_groups`), as its authors prescribe.
"""

from __future__ import annotations

import os

import torch

from ..optim.groups import muon_groups
from . import text
from .base import Workload
from .recipes import lr_defaults, recipe
from .registry import register
from .transformer import GPT, GPTConfig, SequenceCrossEntropy

#: The default model: sized so that a 2000-step run takes about two minutes on one core.
MODEL = {"block_size": 64, "n_layer": 3, "n_head": 4, "n_embd": 96}
BATCH_SIZE = 32
VAL_WINDOWS = 512

# Recipe (BENCHMARKS.md, "charlm"): AdamW 3e-3, weight decay 0.1, 2000 steps of
# batch 32; a 100-step warmup, then WSD with the last 20% decayed linearly to 0
# (Hägele et al. 2024). Measured at seed 0 against warmup + cosine to 3e-4 on
# the same budget: test bpc 1.699 (WSD) vs 1.720 (cosine), val 1.665 vs 1.683.
RECIPE = recipe("adamw", 3e-3, batch_size=BATCH_SIZE, steps=2000, weight_decay=0.1,
                schedule="wsd", schedule_kwargs={"warmup_steps": 100, "stable_steps": 1500, "decay_steps": 400})
# Default lrs from 500-step sweeps at seed 0 (WSD, 25 warmup steps; best validation
# bpc): adamw 1e-3 / 3e-3 / 1e-2 -> 2.33 / 2.22 / 2.93; momentum 0.03 / 0.1 / 0.3 / 1.0
# -> 2.91 / 2.77 / 3.66 / diverged; muon 0.01 / 0.03 / 0.1 -> 1.95 / 1.85 / 2.29;
# lion (decoupled decay 0.5) 1e-4 / 2e-4 / 6e-4 / 2e-3 -> 3.14 / 2.80 / 3.15 / 3.60,
# so lion is a/15 here, not the table's a/5; adamw_schedulefree 3e-3 / 1e-2 -> 2.46 / 3.11.
# The other optimizers follow the ratio table of .recipes from these anchors.
LRS = {**lr_defaults(adam=3e-3, momentum=0.1, muon=0.03), "lion": 2e-4}


def _count(cfg: GPTConfig) -> int:
    with torch.random.fork_rng(devices=[]):  # the workload never draws from the global generator
        return sum(p.numel() for p in GPT(cfg).parameters())


def _param_groups(optimizer: str, model):
    if optimizer == "muon":  # Jordan et al. 2024: embeddings, head, non-2-D parameters on AdamW
        return muon_groups(model, head="lm_head.*")
    return model.parameters()


def build(seed: int, data_dir: str | os.PathLike | None = None, *, model: dict | None = None,
          corpus_chars: int = text.CORPUS_CHARS) -> Workload:
    """The workload (``model``/``corpus_chars`` override the defaults, for tests)."""
    cfg = {**MODEL, **(model or {})}
    block = cfg["block_size"]
    if data_dir is None:
        corpus, info = text.torch_sources(corpus_chars)
    else:
        corpus, info = text.read_input(data_dir)
    train_text, val_text, test_text = text.split_text(corpus, block)
    vocab = text.Vocabulary(train_text)
    ids = [vocab.encode(t) for t in (train_text, val_text, test_text)]
    train = text.random_windows(ids[0], block, seed)
    val = text.consecutive_windows(ids[1], block, VAL_WINDOWS)
    test = text.consecutive_windows(ids[2], block)
    gpt = GPTConfig(vocab_size=len(vocab), **cfg)
    unknown = {name: int((t == text.UNKNOWN).sum()) for name, t in zip(("val", "test"), ids[1:])}
    return Workload(
        name="charlm",
        description="character-level transformer LM (3 blocks, width 96, context 64) on the torch sources; bpc",
        train=train, val=val, test=test,
        make_model=lambda: GPT(gpt),
        loss_fn=SequenceCrossEntropy(),
        metric="bpc",
        param_groups=_param_groups,
        recipe=dict(RECIPE),
        lr_defaults=LRS,
        seed=seed,
        info={
            **info,
            "characters": len(corpus),
            "sha256": text.digest(corpus),
            "unigram_bpc": text.unigram_bits(corpus),
            "vocabulary": len(vocab),
            "unknown_characters": unknown,
            "split_characters": {"train": len(train_text), "val": len(val_text), "test": len(test_text)},
            "windows": {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])},
            "model": {**cfg, "parameters": _count(gpt), "tied_head": False},
        },
    )


@register("charlm", "character-level transformer LM on the torch sources (or --data-dir DIR/input.txt); bpc, lower is better")
def charlm(seed: int, data_dir=None) -> Workload:
    return build(seed, data_dir)
