"""A real single-node Slurm cluster for the tests: Debian's ``slurm-wlm`` (installed with
apt-get, as root, when absent), its configuration, state and logs in a temporary folder,
munged on a private socket and key, slurmctld and slurmd on loopback ports picked free.

    with cluster(root) as c:
        if c.reason:
            pytest.skip(reason=c.reason)
        c.run("sbatch", ...)   # any client command, with SLURM_CONF set
    assert c.survivors() == []  # no daemon, step or job process is left

Starting takes about a second (after the install) and at most :data:`START_TIMEOUT`; it
never raises: whatever stops it becomes ``reason``. On exit every process whose environment names this cluster's
slurm.conf (the daemons, slurmstepd, the jobs' processes) is killed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 60.0  # seconds, from the first daemon to the node idle
DAEMONS = ("munged", "slurmctld", "slurmd")


def _missing() -> list[str]:
    return [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(b) is None
            and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _install() -> str | None:
    """apt-get install slurm-wlm and munge; the reason it failed, or None."""
    if shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "Slurm is not installed and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]  # another test process may be installing it too
    for cmd, limit in ((["apt-get", "update"], 600), (["apt-get", *lock, "install", "-y", "slurm-wlm", "munge"], 1200)):
        try:
            done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} took over {limit} s"
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    return None


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on loopback now (the daemons bind them a moment later)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


class Cluster:
    """One node (this host's short name, address 127.0.0.1), one partition ``debug``."""

    def __init__(self, root: Path, cpus: int | None = None):
        self.root = Path(root)
        # CR_Core counts cores: declare at least 2 so two 1-CPU tasks run at once (the node's
        # hardware is not checked against it: SlurmdParameters=config_overrides)
        self.cpus = cpus or max(2, len(os.sched_getaffinity(0)))
        self.node = socket.gethostname().split(".")[0] or "localhost"
        self.conf = self.root / "slurm.conf"
        # a Slurm job's own variables (the tests run in one) would steer this cluster's clients
        outer = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(outer)}, "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.reason: str | None = None
        self._sock_dir: Path | None = None

    # -- the client side ---------------------------------------------------------------------

    def run(self, *cmd: str, env: dict[str, str] | None = None, timeout: float = 30,
            check: bool = True) -> subprocess.CompletedProcess:
        """A client command (sbatch, squeue, scontrol, ...) on this cluster, with ``env`` added to
        the environment (sbatch passes it on to the job); its output as text."""
        done = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
        return done

    def log(self, daemon: str) -> str:
        return _tail(self.root / "log" / f"{daemon}.log", 20)

    # -- start and stop ----------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.reason = self.start()
        except Exception as exc:  # noqa: BLE001 - any failure to start is a reason to skip
            self.reason = f"{type(exc).__name__}: {exc}"
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> str | None:
        """Start it; the reason it could not be started, or None."""
        if _missing():
            reason = _install()
            if reason:
                return reason
            if _missing():
                return f"apt-get installed slurm-wlm but {', '.join(_missing())} not found"
        self._write_files()
        deadline = time.monotonic() + START_TIMEOUT
        sock = self._sock_dir / "munge.socket"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--socket={sock}",
                               f"--key-file={self.root / 'munge' / 'munge.key'}",
                               f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        reason = self._wait(lambda _: sock.exists(), deadline, "munged made no socket")
        if reason:
            return reason
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
        reason = self._wait(lambda left: "UP" in self.run("scontrol", "ping", check=False, timeout=left).stdout,
                            deadline, "slurmctld did not answer scontrol ping")
        if reason:
            return reason
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        return self._wait(lambda left: self.state(left) == "idle", deadline, "the node did not become idle")

    def state(self, timeout: float = 10) -> str:
        """The node's state as sinfo prints it (idle, mix, alloc, down*, ...)."""
        done = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", check=False, timeout=timeout)
        return done.stdout.strip()

    def _write_files(self) -> None:
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        # a Unix socket path holds ~107 bytes: the socket goes in a short folder of its own
        self._sock_dir = Path(tempfile.mkdtemp(prefix="dl-munge-"))
        os.chmod(self._sock_dir, 0o755)  # munged wants its socket's folder reachable by all
        ctld_port, slurmd_port = _free_ports(2)
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        lines = {
            "ClusterName": "descentlab",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "SlurmUser": user,
            "SlurmdUser": user,
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self._sock_dir / 'munge.socket'}",
            **self._bind_loopback(),
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            # no cgroups: processes tracked through /proc, tasks not bound, no accounting
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "SwitchType": "switch/none",
            "MpiDefault": "none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "SlurmdParameters": "config_overrides",
            "SchedulerType": "sched/backfill",
            "ReturnToService": 2,
            "MailProg": "/bin/true",
            "KillWait": 2,
            "MinJobAge": 300,
            "InactiveLimit": 0,
            "NodeName": f"{self.node} NodeHostname={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                        f"Sockets=1 CoresPerSocket={self.cpus} ThreadsPerCore=1 State=UNKNOWN",
            "PartitionName": f"debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        }
        self.conf.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))

    def _bind_loopback(self) -> dict[str, str]:
        """Both daemons listen on the address this host's name resolves to instead of every
        interface: asked for only where that address is a loopback one (else they could not be
        reached at 127.0.0.1; they then listen on every interface, and are still reached on
        loopback)."""
        try:
            loopback = socket.gethostbyname(socket.gethostname()).startswith("127.")
        except OSError:
            loopback = False
        return {"CommunicationParameters": "NoInAddrAny,NoCtldInAddrAny"} if loopback else {}

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.log", "wb")  # noqa: SIM115 - the daemon keeps it
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        out.close()

    def _wait(self, ready, deadline: float, what: str) -> str | None:
        """None once ``ready(seconds left)`` is true; the reason if a daemon exits or time is up."""
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    return f"{name} exited {proc.returncode} while starting: {_tail(self.root / 'log' / f'{name}.log')}"
            try:
                if ready(max(0.5, min(5.0, deadline - time.monotonic()))):
                    return None
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                logs = " || ".join(f"{n}: {_tail(self.root / 'log' / f'{n}.log')}" for n in self.procs)
                return f"{what} within {START_TIMEOUT:.0f} s: {logs}"
            time.sleep(0.2)

    def survivors(self) -> list[int]:
        """The pids of live processes whose environment names this cluster's slurm.conf: the
        daemons, the slurmstepd of each job and the jobs' own processes (they inherit it)."""
        mark = f"SLURM_CONF={self.conf}".encode() + b"\0"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if mark in (entry / "environ").read_bytes() + b"\0":
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if stat[0] not in ("Z", "X"):
                        found.append(int(entry.name))
            except (OSError, IndexError):
                continue
        return found

    def stop(self) -> None:
        """SIGTERM the daemons (SIGKILL after 5 s), then SIGKILL whatever of this cluster is left."""
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is None:
                continue
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while (left := self.survivors()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)


def cluster(root: Path) -> Cluster:
    """A cluster in ``root``: started by ``with``, stopped at its end (see the module's doc)."""
    return Cluster(root)
