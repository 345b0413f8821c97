"""An on-disk cache of generated arrays (``.npz``), keyed by how they were made.

Files live in ``$DESCENTLAB_CACHE`` (default ``~/.cache/descentlab``) under a
name carrying a hash of the key, are written atomically (a temp file in the
same directory, then ``os.replace``), are read with ``allow_pickle=False``, and
are regenerated when unreadable, of the wrong key, or rejected by a check.
A cache that cannot be written only costs time: a warning, and the arrays are
still returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..timing import one_time

ENV_VAR = "DESCENTLAB_CACHE"
_KEY_FIELD = "__cache_key__"


def cache_dir() -> Path:
    """``$DESCENTLAB_CACHE`` if set (and not empty), else ``~/.cache/descentlab``."""
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "descentlab"


def cache_path(name: str, key: Mapping[str, Any], directory: str | os.PathLike | None = None) -> Path:
    """Where the arrays called ``name`` made with ``key`` are cached."""
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:16]
    return Path(directory or cache_dir()) / f"{name}-{digest}.npz"


def _canonical(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def load_cached(path: Path, key: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays in ``path`` if it is a readable cache file of ``key``, else None
    (a missing file silently; a corrupt or foreign one with a warning)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}  # reads (and CRC-checks) every member
        stored = arrays.pop(_KEY_FIELD)
        if str(stored) != _canonical(key):
            raise ValueError("it was made with different arguments")
    except Exception as exc:  # noqa: BLE001 - any failure to read means: build it again
        warnings.warn(f"ignoring the unreadable cache file {path} ({exc}); regenerating it", stacklevel=3)
        return None
    return arrays


def save_atomic(path: Path, arrays: Mapping[str, np.ndarray], key: Mapping[str, Any]) -> bool:
    """Write ``arrays`` to ``path`` atomically; False (and a warning) if it cannot."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{_KEY_FIELD: np.array(_canonical(key))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except OSError as exc:
        warnings.warn(f"could not write the cache file {path} ({exc}); continuing without it", stacklevel=3)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def cached(
    name: str,
    key: Mapping[str, Any],
    build: Callable[[], Mapping[str, np.ndarray]],
    *,
    check: Callable[[Mapping[str, np.ndarray]], None] | None = None,
    directory: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """The arrays ``build()`` returns, from the cache when a valid copy is there.

    ``check(arrays)`` may raise to reject a cached copy (wrong shapes, say), which
    is then rebuilt and overwritten.
    """
    path = cache_path(name, key, directory)
    arrays = load_cached(path, key)
    if arrays is not None and check is not None:
        try:
            check(arrays)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"ignoring the cache file {path} ({exc}); regenerating it", stacklevel=2)
            arrays = None
    if arrays is None:
        with one_time(f"data generation ({name})"):
            arrays = {k: np.asarray(v) for k, v in build().items()}
            if _KEY_FIELD in arrays:
                raise ValueError(f"{_KEY_FIELD!r} is reserved")
            save_atomic(path, arrays, key)
    return arrays
