"""A real PostgreSQL server for the tests: Debian's ``postgresql``, started in a temporary
directory, listening on a Unix socket only (no TCP port at all); installed with apt-get
(as root) when absent. ``server()`` returns an SQLAlchemy URL or the reason it cannot."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _install() -> str | None:
    """apt-get install postgresql; the reason it failed, or None."""
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "PostgreSQL is not installed and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd, limit in ((["apt-get", "update"], 600), (["apt-get", "install", "-y", "postgresql"], 1200)):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} took over {limit} s"
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.bin: Path | None = None
        self.url: str | None = None

    def start(self) -> str | None:
        """Start it; the reason it could not be started, or None."""
        self.bin = _binaries()
        if self.bin is None:
            reason = _install()
            if reason:
                return reason
            self.bin = _binaries()
            if self.bin is None:
                return "apt-get installed postgresql but no initdb was found"
        if os.geteuid() == 0:
            os.chmod(self.root, 0o777)  # the postgres user writes its data and socket here
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(sock, "postgres")
        steps = [
            [str(self.bin / "initdb"), "-D", str(data), "-U", "descentlab", "--auth=trust", "-E", "UTF8"],
            [str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
             "-o", f"-k {sock} -c listen_addresses='' -c fsync=off", "start"],
            [str(self.bin / "createdb"), "-h", str(sock), "-U", "descentlab", "descentlab_test"],
        ]
        for cmd in steps:
            done = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                return f"{Path(cmd[0]).name} failed: {(done.stderr or done.stdout).strip()[-300:]}"
        self.url = f"postgresql://descentlab@/descentlab_test?host={sock}"
        return None

    def stop(self) -> None:
        if self.bin is not None and (self.root / "data" / "postmaster.pid").exists():
            subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                                         "stop"]), capture_output=True, timeout=60)
