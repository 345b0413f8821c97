"""Character-level text for the ``charlm`` workload: a corpus, a vocabulary, windows.

* **The default corpus** is text no one here wrote and every machine with the
  pinned dependencies has byte for byte: the Python sources of the installed
  ``torch`` package, files in sorted order of their paths relative to the
  package (POSIX form), each followed by a newline, cut at
  :data:`CORPUS_CHARS` characters. Its SHA-256, size, file range and the torch
  version are in the workload's ``info``; another torch version gives another
  corpus (and says so there).
* **A user's corpus**: ``DIR/input.txt``, any UTF-8 text (the classic
  tiny-Shakespeare file works), through the same pipeline.
* **Splits**: contiguous, train the first 90%, validation the next 5%, test
  the last 5% (so no window of one split overlaps another).
* **Vocabulary**: the characters of the training split, sorted, as ids
  1..V; id 0 is :data:`UNKNOWN`, which every character of the validation and
  test splits that the training split lacks maps to.
* **Windows**: the training set is ``len(train) // block`` windows of
  ``block`` characters at start positions drawn uniformly from a generator
  seeded by the workload's seed (input ``ids[s:s+block]``, target
  ``ids[s+1:s+block+1]``); validation and test are consecutive
  non-overlapping windows. They are tensors, so the Trainer shuffles them per
  epoch from ``(seed, epoch)`` and resumes mid-epoch exactly.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UsageError
from ..timing import one_time
from .data import rng

CORPUS_CHARS = 2_000_000
SPLIT = (0.90, 0.05, 0.05)
UNKNOWN = 0
INPUT_FILE = "input.txt"


def torch_sources(limit: int = CORPUS_CHARS) -> tuple[str, dict]:
    """The default corpus and its provenance."""
    root = Path(torch.__file__).resolve().parent
    with one_time("data generation (charlm corpus)"):
        paths = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.py") if p.is_file())
        parts, size, used = [], 0, []
        for rel, path in paths:
            if size >= limit:
                break
            text = path.read_text(encoding="utf-8", errors="replace") + "\n"
            parts.append(text)
            used.append(rel)
            size += len(text)
        text = "".join(parts)[:limit]
    return text, {
        "source": f"the Python sources of torch {torch.__version__}, files in sorted path order, "
                  f"cut at {limit} characters",
        "torch_version": torch.__version__,
        "files": len(used),
        "first_file": used[0] if used else None,
        "last_file": used[-1] if used else None,
    }


def read_input(data_dir: str | os.PathLike) -> tuple[str, dict]:
    """``DIR/input.txt`` as text; UsageError naming the file if it is missing,
    empty, or not UTF-8."""
    path = Path(data_dir) / INPUT_FILE
    if not path.is_file():
        raise UsageError(f"charlm needs a text file {str(path)!r}: not found (--data-dir DIR reads DIR/{INPUT_FILE})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{str(path)!r} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} cannot be decoded"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark is not part of the text
    if not text.strip():
        raise UsageError(f"{str(path)!r} is empty: charlm needs some text to learn from")
    return text, {"source": str(path.resolve())}


def unigram_bits(text: str) -> float:
    """Entropy of the character distribution of ``text``, in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


class Vocabulary:
    """Characters of the training text as ids 1..V; anything else is :data:`UNKNOWN` (0)."""

    def __init__(self, train_text: str):
        self.chars = sorted(set(train_text))
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 1  # the unknown id included

    def encode(self, text: str) -> Tensor:
        index = self.index
        return torch.tensor([index.get(c, UNKNOWN) for c in text], dtype=torch.int64)

    def decode(self, ids: Tensor) -> str:
        return "".join(self.chars[i - 1] if i > 0 else "\ufffd" for i in ids.tolist())


def split_text(text: str, block: int) -> tuple[str, str, str]:
    """Contiguous train/val/test of :data:`SPLIT`; each part long enough for one window."""
    n = len(text)
    a, b = int(n * SPLIT[0]), int(n * (SPLIT[0] + SPLIT[1]))
    parts = text[:a], text[a:b], text[b:]
    for name, part in zip(("train", "val", "test"), parts):
        if len(part) < block + 1:
            raise UsageError(
                f"the text is too short for charlm: its {name} split has {len(part)} characters, "
                f"fewer than one window of {block + 1} (the whole text has {n}; give at least "
                f"{math.ceil((block + 1) / min(SPLIT))})"
            )
    return parts


def random_windows(ids: Tensor, block: int, seed: int, count: int | None = None) -> tuple[Tensor, Tensor]:
    """``count`` (default ``len // block``) windows at seeded uniform start positions."""
    count = count or max(1, (len(ids) - 1) // block)
    starts = torch.from_numpy(rng(seed, "charlm windows").integers(0, len(ids) - block, size=count))
    offsets = torch.arange(block)
    index = starts[:, None] + offsets[None, :]
    return ids[index], ids[index + 1]


def consecutive_windows(ids: Tensor, block: int, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Non-overlapping windows from the start (at most ``limit``)."""
    count = (len(ids) - 1) // block
    if limit is not None:
        count = min(count, limit)
    x = ids[: count * block].view(count, block)
    y = ids[1 : count * block + 1].view(count, block)
    return x, y


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = ["CORPUS_CHARS", "INPUT_FILE", "SPLIT", "UNKNOWN", "Vocabulary", "consecutive_windows", "digest",
           "random_windows", "read_input", "split_text", "torch_sources", "unigram_bits"]
