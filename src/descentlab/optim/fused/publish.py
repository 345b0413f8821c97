"""Build a torch C++ extension once per install, and never hang on a killed build.

``torch.utils.cpp_extension.load`` on its own builds into one directory per
user and extension name (``~/.cache/torch_extensions/<py>_cpu/<name>``) and
guards it with a lock *file* that only a clean exit removes: a build killed by
SIGKILL, the OOM killer or a timeout leaves the file behind, and every later
process waits for it forever, silently. Two virtual environments (two torch
installs, other include paths) also share that one directory and rebuild over
each other.

So :func:`build_library` builds an :class:`Extension` like this:

* The build lives in ``<root>/<name>-<key>/``, where the key hashes
  everything that makes two builds differ (:meth:`Extension.key`): the
  sources' and headers' bytes, the flags, torch's include paths and version,
  the Python version and ABI, and a caller's tag (descentlab's version). Two
  installs never share a build unless it would be the same build, and never
  rebuild one another's.
* The lock is an ``fcntl.flock`` on ``<dir>/lock``: the kernel releases it
  when its holder dies, however it dies, so a dead builder never blocks. The
  holder writes its pid and start time into it for the others' messages.
* The holder re-checks whether the library was published meanwhile (then it
  does not build), removes the private directories of builders that died (it
  holds the lock, so none of them is alive), builds into a private
  ``tmp-<pid>-<random>/`` (torch's own lock file lives and dies there) and
  publishes the finished library with one atomic ``os.replace``. A library at
  the published path is therefore always complete.
* A process that finds the lock held prints one line naming the holder and
  the directory, and gives up after :func:`wait_seconds` with
  :class:`BuildWaitTimeout`, instead of waiting forever on a hung holder.

Environment: ``DESCENTLAB_KERNEL_DIR`` (the root; else ``$TORCH_EXTENSIONS_DIR``
if set, else ``$XDG_CACHE_HOME/descentlab/kernels``, default
``~/.cache/descentlab/kernels``) and ``DESCENTLAB_KERNEL_WAIT`` (seconds to wait
for another process's build, default 600).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

DIR_ENV = "DESCENTLAB_KERNEL_DIR"
WAIT_ENV = "DESCENTLAB_KERNEL_WAIT"
DEFAULT_WAIT = 600.0
LIB_EXT = ".pyd" if sys.platform == "win32" else ".so"
HEADERS = ("*.h", "*.hpp", "*.cuh")


class BuildWaitTimeout(TimeoutError):
    """Another process held the build's lock for longer than the wait allows."""


class Library(NamedTuple):
    path: Path  # the published library
    built: bool  # whether this call built it (False: it was there, or another process built it)


def default_root() -> Path:
    """Where the builds live: ``$DESCENTLAB_KERNEL_DIR``, else ``$TORCH_EXTENSIONS_DIR``,
    else ``$XDG_CACHE_HOME/descentlab/kernels`` (``~/.cache/descentlab/kernels``)."""
    for env in (DIR_ENV, "TORCH_EXTENSIONS_DIR"):
        if os.environ.get(env):
            return Path(os.environ[env]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "descentlab" / "kernels"


def wait_seconds() -> float:
    """How long to wait for another process's build (``$DESCENTLAB_KERNEL_WAIT``, default 600)."""
    text = os.environ.get(WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_WAIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ValueError(f"{WAIT_ENV}={text!r}: expected a number of seconds >= 0")
    return value


@dataclass(frozen=True)
class Extension:
    """A torch C++ extension that registers its ops (``TORCH_LIBRARY``), loaded with
    ``torch.ops.load_library``. ``name`` is the file's name (an identifier);
    ``include_dirs`` are searched for headers, whose bytes are part of the key;
    ``tag`` is anything else that makes builds differ (a package's version)."""

    name: str
    sources: tuple[Path, ...]
    cflags: tuple[str, ...] = ()
    include_dirs: tuple[Path, ...] = ()
    tag: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"extension name {self.name!r}: expected an identifier (it names the C++ module)")
        if not self.sources:
            raise ValueError(f"extension {self.name!r}: expected at least one source file, got none")

    def key(self) -> str:
        """The hash of everything that makes this build differ from another (hex)."""
        import torch

        digest = hashlib.sha256()

        def add(label: str, data: str | bytes) -> None:
            data = data.encode() if isinstance(data, str) else data
            digest.update(f"{label}:{len(data)}:".encode())
            digest.update(data)

        add("name", self.name)
        for source in self.sources:
            add("source", Path(source).read_bytes())
        for folder in self.include_dirs:
            for header in sorted({h for pattern in HEADERS for h in Path(folder).glob(pattern)}):
                add("header " + header.name, header.read_bytes())
        for flag in self.cflags:
            add("cflag", flag)
        for path in torch_include_paths():  # torch's headers: another venv, another torch
            add("torch include", str(path))
        add("torch", torch.__version__)
        add("python", f"{sys.version} {sys.implementation.cache_tag} {sysconfig.get_config_var('EXT_SUFFIX')}")
        add("python include", sysconfig.get_paths().get("include", ""))
        add("compiler", os.environ.get("CXX", ""))
        add("tag", self.tag)
        return digest.hexdigest()

    def directory(self, root: str | os.PathLike | None = None) -> Path:
        """This build's directory: ``<root>/<name>-<key[:16]>``."""
        return Path(root if root is not None else default_root()) / f"{self.name}-{self.key()[:16]}"

    def library(self, root: str | os.PathLike | None = None) -> Path:
        """Where the finished library is published (it exists once the build is done)."""
        return self.directory(root) / f"{self.name}{LIB_EXT}"


def torch_include_paths() -> list[str]:
    """``torch.utils.cpp_extension.include_paths()`` for CPU, without importing that module
    (it imports setuptools: about 0.1 s of every process that looks its kernels up by key);
    tests/optim/test_kernel_build.py checks the two are equal."""
    import torch

    include = os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "include")
    return [include, os.path.join(include, "torch", "csrc", "api", "include")]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _holder(lock: Path) -> str:
    """Who holds the lock, from what it wrote into the file."""
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if "pid" not in info:
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info['pid']} (building since {since})"


def _acquire(lock: Path, directory: Path, wait: float, log: Callable[[str], None]) -> int:
    """An open descriptor of ``lock`` holding its exclusive flock; waits at most ``wait`` s."""
    import fcntl

    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the compiler (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        holder = _holder(lock)
        log(f"descentlab: waiting for {holder} to finish building {directory} "
            f"(at most {wait:g} s; {WAIT_ENV} sets it)")
        deadline = time.monotonic() + wait
        while True:
            time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BuildWaitTimeout(
                        f"gave up after {wait:g} s waiting for {holder} to finish building {directory}: "
                        f"set {WAIT_ENV} to wait longer, or end that process (a killed build leaves nothing "
                        "that blocks the next)"
                    ) from None
    except BaseException:
        os.close(fd)
        raise


def _compile(ext: Extension, into: Path, verbose: bool) -> Path:
    """Build ``ext`` in the directory ``into`` with torch's builder; the library file it made."""
    from torch.utils.cpp_extension import load

    load(
        name=ext.name,
        sources=[str(s) for s in ext.sources],
        extra_include_paths=[str(d) for d in ext.include_dirs],
        extra_cflags=list(ext.cflags),
        build_directory=str(into),
        is_python_module=False,
        verbose=verbose,
    )
    # torch names a second build of one name in one process name_v1, name_v2...
    made = sorted(into.glob(f"{ext.name}*{LIB_EXT}"), key=lambda p: p.stat().st_mtime)
    if not made:
        raise RuntimeError(f"building {ext.name!r} in {into} made no {LIB_EXT} file")
    return made[-1]


def build_library(ext: Extension, root: str | os.PathLike | None = None, *, wait: float | None = None,
                  log: Callable[[str], None] | None = None, verbose: bool = False) -> Library:
    """The published library of ``ext`` under ``root`` (default :func:`default_root`),
    built first if no process has built it yet; does not load it.

    Waits at most ``wait`` seconds (default :func:`wait_seconds`) for another
    process's build, saying so once through ``log`` (default: a line on stderr),
    then raises :class:`BuildWaitTimeout`. A failed build raises torch's error
    and leaves nothing behind.
    """
    directory = ext.directory(root)
    library = directory / f"{ext.name}{LIB_EXT}"
    if library.is_file():
        return Library(library, False)
    wait = wait_seconds() if wait is None else wait
    directory.mkdir(parents=True, exist_ok=True)
    fd = _acquire(directory / "lock", directory, wait, log or _stderr)
    try:
        if library.is_file():  # published while we waited
            return Library(library, False)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode(), 0)
        for stale in directory.glob("tmp-*"):  # we hold the lock: their builders are dead
            shutil.rmtree(stale, ignore_errors=True)
        private = Path(tempfile.mkdtemp(prefix=f"tmp-{os.getpid()}-", dir=directory))
        try:
            os.replace(_compile(ext, private, verbose), library)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return Library(library, True)
    finally:
        os.close(fd)  # releases the lock
