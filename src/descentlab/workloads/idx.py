"""The IDX file format of the MNIST files (LeCun et al.), read with validation.

Layout, big-endian: two zero bytes; a type byte (0x08 uint8, 0x09 int8, 0x0B
int16, 0x0C int32, 0x0D float32, 0x0E float64); a byte with the number of
dimensions; one uint32 per dimension; then the values, row-major. The MNIST
images are ``00 00 08 03`` (uint8, 3-D: count × rows × cols) and the labels
``00 00 08 01``. A ``.gz`` suffix means gzip-compressed.

Nothing in a file is trusted: the magic number, the dimensions and the exact
data length are checked before any array is built, and a file of the wrong
size, truncated or with trailing bytes, is rejected.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CODES = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}
MAX_BYTES = 1 << 31
"""Refuse headers announcing more data than this (2 GiB; MNIST's train images are 47 MB)."""


class IdxError(ValueError):
    """An IDX file is missing, malformed, truncated or not what was expected."""


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_exact(f, n: int, path: Path, what: str) -> bytes:
    chunks, left = [], n
    while left:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    got = b"".join(chunks)
    if len(got) != n:
        raise IdxError(f"{path}: truncated IDX file: expected {n} bytes of {what}, found {len(got)}")
    return got


def read_idx(path: str | os.PathLike, *, dtype: int | None = None, ndim: int | None = None,
             max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The array in the IDX file ``path`` (native byte order).

    ``dtype`` (a type byte, e.g. 0x08) and ``ndim``, when given, must match the
    header. Raises :class:`IdxError` (a ValueError) naming the file and the
    problem: a bad magic number, an unknown type, a size over ``max_bytes``,
    a truncated file, trailing bytes, or an unreadable gzip stream.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            magic = _read_exact(f, 4, path, "magic number")
            if magic[0] != 0 or magic[1] != 0 or magic[2] not in DTYPES:
                raise IdxError(
                    f"{path}: not an IDX file: bad magic number 0x{magic.hex()} "
                    f"(expected 0x0000TTDD: two zero bytes, a type byte in "
                    f"{{{', '.join(f'0x{k:02X}' for k in DTYPES)}}} and the number of dimensions)"
                )
            code, dims_n = magic[2], magic[3]
            if dtype is not None and code != dtype:
                raise IdxError(f"{path}: IDX type byte is 0x{code:02X}, expected 0x{dtype:02X}")
            if ndim is not None and dims_n != ndim:
                raise IdxError(f"{path}: IDX file has {dims_n} dimension(s), expected {ndim}")
            shape = struct.unpack(f">{dims_n}I", _read_exact(f, 4 * dims_n, path, "dimensions"))
            item = np.dtype(DTYPES[code])
            n_bytes = int(np.prod(shape, dtype=object)) * item.itemsize
            if n_bytes > max_bytes:
                raise IdxError(f"{path}: IDX header announces {n_bytes} bytes of data (shape {shape}), "
                               f"more than the limit of {max_bytes}")
            raw = _read_exact(f, n_bytes, path, f"data for shape {shape}")
            if f.read(1):
                raise IdxError(f"{path}: IDX file has trailing bytes after the {n_bytes} bytes of data "
                               f"for shape {shape}")
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise IdxError(f"{path}: cannot read IDX file: {exc}") from None
    return np.frombuffer(raw, dtype=item).reshape(shape).astype(item.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed if ``path`` ends in ``.gz``)."""
    path = Path(path)
    a = np.asarray(array)
    code = CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        allowed = sorted(str(np.dtype(v).newbyteorder("=")) for v in DTYPES.values())
        raise ValueError(f"IDX cannot store dtype {a.dtype}; use one of {allowed}")
    if a.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {a.ndim}")
    header = bytes((0, 0, code, a.ndim)) + struct.pack(f">{a.ndim}I", *a.shape)
    payload = header + a.astype(DTYPES[code]).tobytes()
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(payload)
    return path
