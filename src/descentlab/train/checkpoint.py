"""Checkpoints: written atomically, read without unpickling code.

* Write: ``torch.save`` to a temporary file in the same directory, ``fsync``,
  then ``os.replace`` — a reader sees the old file or the new one, never half of
  one, even if the process is killed mid-write.
* Read: ``torch.load(weights_only=True)`` only. A checkpoint that is truncated,
  corrupt, or holds a pickled object with code in it is reported (a warning
  naming the file and the reason) and the previous valid one is used.

Files are ``step-<8 digits>.pt`` in the checkpoint directory; ``keep`` newest
are kept. ``best.pt`` holds the best model so far (never a non-finite one).
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")
BEST_FILE = "best.pt"


class CheckpointError(RuntimeError):
    """No valid checkpoint could be read."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def safe_load(path: str | os.PathLike) -> Any:
    """Load a checkpoint with ``weights_only=True``; raise CheckpointError saying why not."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for bad files
        text = str(exc)
        # torch's restricted unpickler names a GLOBAL when the file asks for
        # code (a class or function); anything else is damage.
        if "GLOBAL" in text or "Unsupported global" in text:
            reason = "it holds pickled objects that are not plain tensors or containers (refused as unsafe)"
        else:
            detail = next((ln for ln in reversed(text.splitlines()) if ln.strip() and "documentation" not in ln), text)
            reason = f"it is truncated or corrupt ({type(exc).__name__}: {detail.strip()[:160]})"
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {reason}") from None


def step_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of the step checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = STEP_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_step(directory: str | os.PathLike, step: int, obj: Any, keep: int = 2) -> Path:
    """Write ``step-<step>.pt`` and delete all but the ``keep`` newest."""
    path = atomic_save(obj, Path(directory) / f"step-{step:08d}.pt")
    for _, old in step_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(directory: str | os.PathLike) -> tuple[Any, Path] | None:
    """The newest step checkpoint that loads, or None if there is none at all.

    Invalid ones are reported with a warning and skipped; if checkpoints exist
    but none is valid, CheckpointError is raised.
    """
    candidates = step_checkpoints(directory)
    problems = []
    for _, path in reversed(candidates):
        try:
            return safe_load(path), path
        except CheckpointError as exc:
            warnings.warn(f"{exc}; using the previous checkpoint", stacklevel=2)
            problems.append(str(exc))
    if problems:
        raise CheckpointError("no valid checkpoint: " + "; ".join(problems))
    return None
