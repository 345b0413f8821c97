"""Build (once per install) and load the C++ kernels of ``csrc/`` (see ``SOURCES``).

The kernels are a torch C++ extension (needs a C++ compiler and the ``ninja``
package), built by :mod:`.publish` into a directory of their own under
``~/.cache/descentlab/kernels`` (``$DESCENTLAB_KERNEL_DIR``, else
``$TORCH_EXTENSIONS_DIR`` if set) whose name carries a hash of everything
that makes the build differ (sources, headers, flags, torch's include paths
and version, Python, descentlab's version): two installs never share or
rebuild one build, and a build killed at any point leaves nothing that blocks
the next (a lock the kernel drops with its holder; a private build directory;
an atomic publish). A process waiting for another's build says so and gives
up after ``$DESCENTLAB_KERNEL_WAIT`` seconds (default 600); the optimizers
then run their chains. A first build takes 35-75 s on 2 cores; loading the
published library afterwards takes well under a second. ``make`` builds it at
install (``python -m descentlab.optim.fused``), and the Trainer loads it
before its first timed step (:func:`prepare`), so a build is never charged to
a run's training time (see :mod:`descentlab.timing`).

The instruction set is chosen from ``torch.backends.cpu.get_cpu_capability()``
(the one torch's own kernels use) and is part of the library's name and key,
so a cache shared by machines of different CPUs never loads code a CPU cannot
run. ``-ffp-contract=off`` keeps the arithmetic as written (no fma the source
does not ask for), which is what makes the kernels match the readable chain.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from . import publish

SOURCES = [
    Path(__file__).with_name("csrc") / name
    for name in ("one_pass.cpp", "multi_pass.cpp", "adafactor.cpp", "muon.cpp", "modern.cpp", "lowprec.cpp")
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("descentlab")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def extension() -> publish.Extension:
    """The kernels for this CPU, as :mod:`.publish` builds them."""
    cap = _capability()
    return publish.Extension(
        name=f"{NAMESPACE}_{cap.lower()}",
        sources=tuple(SOURCES),
        cflags=(*_COMMON, *_FLAGS[cap]),
        include_dirs=(SOURCES[0].parent,),
        tag=f"descentlab {_version()}",
    )


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
        from ...timing import one_time

        start = time.perf_counter()
        with one_time("fused C++ kernel build or load"):  # raises first when timed, in strict mode
            try:
                verbose = bool(os.environ.get("DESCENTLAB_FUSED_VERBOSE"))
                library = publish.build_library(extension(), verbose=verbose).path
                torch.ops.load_library(str(library))
                ns = getattr(torch.ops, NAMESPACE)
                ns.lion  # noqa: B018  (fails here, not mid-step, if the library did not register)
            except Exception as exc:  # compiler missing, ninja missing, build error, a wait given up...
                _error = f"the C++ fused kernels could not be built ({type(exc).__name__}: {exc})".strip()
                raise FusedUnavailable(_error) from exc
        _loaded = SimpleNamespace(ops=ns, seconds=time.perf_counter() - start, path=library)
        return ns


def available() -> str | None:
    """None when the C++ kernels load, else why not."""
    try:
        ops()
    except FusedUnavailable as exc:
        return str(exc)
    return None


def needed_by(optimizer) -> bool:
    """Whether ``optimizer`` may step with the C++ kernels (a named optimizer
    whose fused step is ours, with a CPU parameter group that does not forbid it)."""
    step = getattr(optimizer, "_fused_step", None)
    kernel = getattr(step, "kernel", None)
    if kernel is None:
        return False
    ours = any(getattr(fn, "__module__", "").endswith("fused.cpu_kernels") for fn in (kernel.cpu, kernel.cpu_regularized) if fn)
    if not ours:
        return False
    for group in optimizer.param_groups:
        if group.get("fused") is False or (group.get("fused") is None and group.get("foreach") is not None):
            continue
        if any(getattr(p, "is_cpu", False) for p in group["params"]):
            return True
    return False


def prepare(optimizer, log=None) -> None:
    """Build or load the C++ kernels now if ``optimizer`` may need them, so that
    it never happens inside a timed step; says so once (``log``) when it builds."""
    if _loaded is not None or _error is not None or not needed_by(optimizer):
        return
    if log is not None:
        try:
            library = extension().library()
        except Exception:  # noqa: BLE001 - ops() below says why
            library = None
        if library is None or not library.is_file():
            where = f" in {library.parent}" if library is not None else ""
            log(f"building the fused C++ optimizer kernels{where} (once per install, before any timed step)...")
    available()


def main() -> int:
    """``python -m descentlab.optim.fused``: build (or find) the kernels now."""
    problem = available()
    if problem:
        print(f"descentlab: fused C++ kernels unavailable, the optimizers will use their chains: {problem}")
        return 0  # not an install failure: every optimizer works without them
    print(f"descentlab: fused C++ kernels ready: {_loaded.path} ({_loaded.seconds:.1f} s)")
    return 0

