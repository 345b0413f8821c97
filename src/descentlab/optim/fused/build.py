"""Build (once) and load the C++ kernels of ``csrc/`` (see ``SOURCES``).

The kernels are a torch C++ extension compiled on first use with
``torch.utils.cpp_extension.load`` (needs a C++ compiler and the ``ninja``
package) and cached in torch's extension directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``); torch
rebuilds when the source or the flags change and holds a file lock while
building, so parallel test workers build it once. A first build takes about
25 s on 2 cores; loading the cached library afterwards takes well under a
second.

The instruction set is chosen from ``torch.backends.cpu.get_cpu_capability()``
(the one torch's own kernels use) and is part of the extension's name, so a
cache shared by machines of different CPUs never loads code a CPU cannot run.
``-ffp-contract=off`` keeps the arithmetic as written (no fma the source does
not ask for), which is what makes the kernels match the readable chain.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import torch

SOURCES = [
    Path(__file__).with_name("csrc") / name for name in ("one_pass.cpp", "multi_pass.cpp", "adafactor.cpp", "muon.cpp")
]
NAMESPACE = "descentlab_fused"

# What torch compiles its own kernels of each capability with: the defines
# select at::vec::Vectorized's implementation (and its inline namespace).
_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
    "DEFAULT": ["-DCPU_CAPABILITY=DEFAULT"],
}
# -fopenmp at compile time only: at::parallel_for is inline OpenMP code, whose
# GOMP_* calls then bind to the OpenMP runtime libtorch_cpu already loaded
# (linking our own libgomp would start a second thread pool).
_COMMON = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp"]

_lock = threading.Lock()
_loaded: SimpleNamespace | None = None
_error: str | None = None


class FusedUnavailable(RuntimeError):
    """The C++ kernels could not be built or loaded (the reason is the message)."""


def _capability() -> str:
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old torch
        return "DEFAULT"
    return cap if cap in _FLAGS else "DEFAULT"  # e.g. ZVECTOR, SVE: the portable code


def _header_digest() -> str:
    """A define carrying the hash of the headers: torch rebuilds when the sources
    or the flags change, and does not read the headers the sources include."""
    digest = hashlib.sha256()
    for header in sorted(SOURCES[0].parent.glob("*.h")):
        digest.update(header.read_bytes())
    return f"-DDESCENTLAB_HEADERS={digest.hexdigest()[:16]}"


def build_seconds() -> float | None:
    """How long the last call of :func:`ops` spent building or loading (None before)."""
    return None if _loaded is None else _loaded.seconds


def ops():
    """``torch.ops.descentlab_fused``, building the extension on first use.

    Raises :class:`FusedUnavailable` (with the compiler's or loader's message)
    when it cannot be built; the failure is remembered for the process, so a
    missing compiler costs one attempt, not one per step.
    """
    global _loaded, _error
    if _loaded is not None:
        return _loaded.ops
    with _lock:
        if _loaded is not None:
            return _loaded.ops
        if _error is not None:
            raise FusedUnavailable(_error)
        start = time.perf_counter()
        try:
            from torch.utils.cpp_extension import load

            cap = _capability()
            load(
                name=f"{NAMESPACE}_{cap.lower()}",
                sources=[str(s) for s in SOURCES],
                extra_include_paths=[str(SOURCES[0].parent)],
                extra_cflags=[*_COMMON, *_FLAGS[cap], _header_digest()],
                is_python_module=False,
                verbose=bool(os.environ.get("DESCENTLAB_FUSED_VERBOSE")),
            )
            ns = getattr(torch.ops, NAMESPACE)
            ns.lion  # noqa: B018  (fails here, not mid-step, if the library did not register)
        except Exception as exc:  # compiler missing, ninja missing, build error...
            _error = f"the C++ fused kernels could not be built ({type(exc).__name__}: {exc})".strip()
            raise FusedUnavailable(_error) from exc
        _loaded = SimpleNamespace(ops=ns, seconds=time.perf_counter() - start)
        return ns


def available() -> str | None:
    """None when the C++ kernels load, else why not."""
    try:
        ops()
    except FusedUnavailable as exc:
        return str(exc)
    return None
