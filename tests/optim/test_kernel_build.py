"""The C++ kernel build never hangs anything and is built once per install.

Real processes, no mocks: a build SIGKILLed mid-compile blocks nothing; a wait
on a live holder says what it waits for and gives up after its bound (the real
kernels' ``available()`` then returns the reason); two installs side by side
(different headers, so different keys) are each built once, and a build that
another process finishes while one waits is not built twice.

These build a one-op extension (``TINY``, about 10 s: torch's headers, so that a
compile lasts long enough to be killed mid-way) or a one-function library without
torch's headers (``LIGHT``, about a second: where only the locking and publishing
are tested) with :func:`descentlab.optim.fused.publish.build_library`, the function
the real kernels are built with; the real kernels (a minute) are never built here.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from descentlab.optim.fused import build, publish

TINY = """\
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include "tiny.h"

static at::Tensor twice(const at::Tensor& x) { return x.mul(TINY_FACTOR); }

TORCH_LIBRARY(descentlab_test_tiny, m) { m.def("twice(Tensor x) -> Tensor", twice); }
"""

#: The same factor without torch's headers: read through ctypes, not torch.ops.
LIGHT = """\
#include "tiny.h"

extern "C" double twice(double x) { return x * TINY_FACTOR; }
"""

#: Builds (or finds) the tiny extension in ROOT with the header of INCLUDE, loads it, runs its op.
HELPER = """\
import json, os, sys
from pathlib import Path
import torch
from descentlab.optim.fused import publish

root, source, include = sys.argv[1:4]
ext = publish.Extension("descentlab_test_tiny", (Path(source),), cflags=("-O0",), include_dirs=(Path(include),))  # = _tiny
library = publish.build_library(ext, root)
torch.ops.load_library(str(library.path))
if hasattr(torch.ops.descentlab_test_tiny, "twice"):
    value = torch.ops.descentlab_test_tiny.twice(torch.ones(1)).item()
else:  # LIGHT
    import ctypes
    twice = ctypes.CDLL(str(library.path)).twice
    twice.restype, twice.argtypes = ctypes.c_double, [ctypes.c_double]
    value = twice(1.0)
print(json.dumps({"built": library.built, "path": str(library.path), "value": value}))
"""


def _tiny(source: Path, include: Path) -> publish.Extension:
    """The extension HELPER builds."""
    return publish.Extension("descentlab_test_tiny", (source,), cflags=("-O0",), include_dirs=(include,))


def _can_build() -> str | None:
    from torch.utils.cpp_extension import is_ninja_available

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler"
    if not is_ninja_available():
        return "no ninja"
    return None


pytestmark = pytest.mark.skipif(_can_build() is not None, reason=f"cannot build C++ extensions: {_can_build()}")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (publish.DIR_ENV, publish.WAIT_ENV)}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _install(tmp_path: Path, name: str, factor: int, source: str = TINY) -> tuple[Path, Path]:
    """A copy of the tiny source and its header (``TINY_FACTOR``): the source file and include dir."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tiny.cpp").write_text(source)
    (folder / "tiny.h").write_text(f"#define TINY_FACTOR {factor}\n")
    return folder / "tiny.cpp", folder


def _start(tmp_path: Path, root: Path, source: Path, include: Path, **env: str) -> subprocess.Popen:
    """The helper in a new session (its compiler too: killpg ends both); stderr to a file, read while it runs."""
    helper = tmp_path / "helper.py"
    if not helper.exists():
        helper.write_text(HELPER)
    with open(tmp_path / f"stderr-{time.monotonic_ns()}", "w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(helper), str(root), str(source), str(include)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=_env(**env), start_new_session=True,
        )
    proc.stderr_path = Path(err.name)
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    return proc.stderr_path.read_text()


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[dict, str]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"helper failed ({proc.returncode}):\n{_stderr(proc)}"
    return json.loads(out.strip().splitlines()[-1]), _stderr(proc)


def _wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the helper ended before {what}: {_stderr(proc)}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_a_build_killed_mid_compile_blocks_nothing(tmp_path):
    root = tmp_path / "root"
    source, include = _install(tmp_path, "install", 2)
    first = _start(tmp_path, root, source, include)
    try:
        # mid-build: it holds the lock (its pid in it) and torch is compiling in its private directory
        ninja = _wait_for(lambda: next(root.glob("*/tmp-*/build.ninja"), None), "the compile started", first)
        key_dir = ninja.parent.parent
        assert json.loads((key_dir / "lock").read_text())["pid"] == first.pid
        assert (ninja.parent / "lock").exists()  # torch's own lock file, which a kill leaves behind
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the helper and its compiler, as the OOM killer or a timeout would
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert not (key_dir / "descentlab_test_tiny.so").exists()
    assert list(key_dir.glob("tmp-*")), "the killed build's private directory is left behind"

    start = time.monotonic()
    second = _start(tmp_path, root, source, include, **{publish.WAIT_ENV: "5"})
    result, err = _finish(second)
    assert result == {"built": True, "path": str(key_dir / "descentlab_test_tiny.so"), "value": 2.0}
    assert "waiting" not in err, f"a dead build made the next one wait:\n{err}"
    assert time.monotonic() - start < 100
    assert not list(key_dir.glob("tmp-*")), "the dead build's private directory was not removed"


def _hold(lock: Path) -> int:
    """Hold ``lock`` as a live builder would (this process; its own descriptor)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
    return fd


def test_a_wait_on_a_live_holder_says_so_and_gives_up_and_the_kernels_fall_back(tmp_path):
    root = tmp_path / "root"
    directory = build.extension().directory(root)  # the real kernels' directory under this root
    fd = _hold(directory / "lock")
    script = (
        "import time, torch\n"
        "from descentlab import optim\n"
        "from descentlab.optim.fused import build\n"
        "opt = optim.create('lion', [torch.nn.Parameter(torch.zeros(3))], lr=0.1)\n"
        "start = time.monotonic()\n"
        "build.prepare(opt, log=print)  # the Trainer's call: says it builds, then waits\n"
        "print(build.available())\n"
        "print(build.available())  # remembered: no second wait\n"
        "print(f'{time.monotonic() - start:.2f}')\n"
    )
    try:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
            env=_env(**{publish.DIR_ENV: str(root), publish.WAIT_ENV: "1"}),
        )
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    building, first, second, seconds = proc.stdout.strip().splitlines()[-4:]
    assert building == (f"building the fused C++ optimizer kernels in {directory} "
                        "(once per install, before any timed step)...")
    waiting = [line for line in proc.stderr.splitlines() if "waiting for" in line]
    assert len(waiting) == 1 and waiting[0].startswith(f"descentlab: waiting for process {os.getpid()} "), proc.stderr
    assert waiting[0].endswith(f"to finish building {directory} (at most 1 s; {publish.WAIT_ENV} sets it)")
    assert first.startswith("the C++ fused kernels could not be built (BuildWaitTimeout: gave up after 1 s waiting for "
                            f"process {os.getpid()}"), first
    assert str(directory) in first and publish.WAIT_ENV in first
    assert second == first
    assert 1.0 <= float(seconds) < 5.0
    assert elapsed < 60
    assert [p.name for p in directory.iterdir()] == ["lock"], "it built (or began to) without the lock"


def test_two_installs_side_by_side_are_each_built_once(tmp_path):
    root = tmp_path / "root"
    one = _install(tmp_path, "one", 2, LIGHT)
    two = _install(tmp_path, "two", 3, LIGHT)  # another header: another key

    # install one: two processes at once (released together by this one, which held the lock
    # meanwhile): one builds, the other waits for it and then finds the library, building nothing
    fd = _hold(_tiny(*one).directory(root) / "lock")
    try:
        pair = [_start(tmp_path, root, *one, **{publish.WAIT_ENV: "120"}) for _ in range(2)]
        for proc in pair:
            _wait_for(lambda: f"waiting for process {os.getpid()} " in _stderr(proc), "it waited for us", proc)
    finally:
        os.close(fd)
    (a, _), (b, _) = (_finish(p) for p in pair)
    built, waited = (a, b) if a["built"] else (b, a)
    assert built["built"] and not waited["built"] and built["path"] == waited["path"]
    assert built["value"] == waited["value"] == 2.0

    result, _ = _finish(_start(tmp_path, root, *two))
    assert result["built"] and result["value"] == 3.0
    libraries = {Path(built["path"]), Path(result["path"])}
    assert len(libraries) == 2 and {p.parent.parent for p in libraries} == {root}
    assert sorted(p.parent.name for p in libraries) == sorted(p.name for p in root.iterdir())
    stats = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in libraries}

    # new processes of each install load what was built; nothing is rebuilt
    again = [_start(tmp_path, root, *one), _start(tmp_path, root, *two)]
    (first, err1), (second, err2) = (_finish(p) for p in again)
    assert (first["built"], first["value"], second["built"], second["value"]) == (False, 2.0, False, 3.0)
    assert "waiting" not in err1 + err2
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in libraries} == stats
    for library in libraries:
        assert sorted(p.name for p in library.parent.iterdir()) == ["descentlab_test_tiny.so", "lock"]


def test_the_keys_torch_include_paths_are_cpp_extensions():
    from torch.utils.cpp_extension import include_paths

    assert publish.torch_include_paths() == include_paths()


@pytest.mark.parametrize("text", ["-1", "soon", "nan"])
def test_the_wait_bound_is_checked(monkeypatch, text):
    monkeypatch.setenv(publish.WAIT_ENV, text)
    with pytest.raises(ValueError, match=f"{publish.WAIT_ENV}='{text}': expected a number of seconds >= 0"):
        publish.wait_seconds()
