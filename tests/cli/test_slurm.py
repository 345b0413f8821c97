"""docs/examples/slurm_workers.sbatch on a real Slurm cluster (tests/slurm.py: one node, on
loopback): a benchmark is queued on a storage and its process killed, a job array of two
`descentlab worker` tasks runs its runs two at a time on the node's two cores, the same benchmark
command then finds all done and writes benchmark.json and the report, and no Slurm process is left.
(A comparison's queue is the same engine's: tests/compare/test_parallel.py and
tests/compare/test_postgres.py run workers on it.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests import slurm
from tests.compare.test_parallel import trials
from tests.processes import cli

SCRIPT = Path(__file__).parents[2] / "docs" / "examples" / "slurm_workers.sbatch"
DONE = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
        "DEADLINE")


def descentlab() -> str:
    """The console script beside this Python, else the module."""
    script = Path(sys.executable).parent / "descentlab"
    return str(script) if script.exists() else f"{sys.executable} -m descentlab"


def queue(argv: list[str], db: Path, runs: int) -> list[tuple[str, dict | None]]:
    """Start the benchmark and SIGKILL it once its ``runs`` are queued: the runs' states then."""
    coordinator = cli(*argv)
    deadline = time.monotonic() + 120
    while len(trials(db)) < runs:
        assert coordinator.poll() is None and time.monotonic() < deadline, coordinator.stderr.read()
        time.sleep(0.02)
    os.kill(coordinator.pid, signal.SIGKILL)
    coordinator.communicate()
    return trials(db)


def jobs(cluster: slurm.Cluster, job: str) -> dict[str, dict[str, str]]:
    """Each array task's `scontrol show job` fields, by task id."""
    shown = cluster.run("scontrol", "show", "job", "-o", job).stdout
    fields = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in shown.splitlines() if line.strip()]
    return {f["ArrayTaskId"]: f for f in fields}


def array(cluster: slurm.Cluster, work: Path, url: str, study: str) -> tuple[str, dict[str, dict[str, str]]]:
    """Submit the script as a 2-task array and wait for both tasks: (job id, each task's fields)."""
    submitted = cluster.run("sbatch", "--parsable", "--array=0-1", f"--chdir={work}",
                            f"--output={work}/worker-%A_%a.out", str(SCRIPT),
                            env={"STORAGE": url, "STUDY": study, "DESCENTLAB": descentlab()})
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 180
    while True:
        states = cluster.run("squeue", "-h", "-j", job, "-t", "all", "-o", "%T").stdout.split()
        if len(states) == 2 and set(states) <= set(DONE):
            break
        assert time.monotonic() < deadline, (states, cluster.log("slurmctld"), cluster.log("slurmd"))
        time.sleep(0.2)
    return job, jobs(cluster, job)


def test_a_slurm_job_array_of_workers_runs_a_queued_benchmark(tmp_path):
    from tests.cli.test_benchmark import SUITE

    (tmp_path / "tiny.yaml").write_text(SUITE)
    db = tmp_path / "b.sqlite"
    url = f"sqlite:///{db}"
    argv = ["benchmark", "--suite", str(tmp_path / "tiny.yaml"), "--optimizers", "sgd,adam", "--seeds", "2",
            "--jobs", "1", "--storage", url, "--name", "slurmb", "--out", str(tmp_path / "bench")]
    work = tmp_path / "work"
    work.mkdir()
    with slurm.cluster(tmp_path / "slurm") as cluster:
        if cluster.reason:
            pytest.skip(reason=f"no Slurm cluster: {cluster.reason}")
        queued = queue(argv, db, runs=16)
        job, tasks = array(cluster, work, url, "slurmb")
    assert cluster.survivors() == [], "a Slurm daemon, step or job process outlived the cluster"
    assert all(p.poll() is not None for p in cluster.procs.values())
    logs = {i: (work / f"worker-{job}_{i}.out").read_text() for i in ("0", "1")}
    assert sorted(tasks) == ["0", "1"]
    for i, task in tasks.items():
        assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), logs[i]
        assert f"joined benchmark slurmb in {url}: 1 worker(s)" in logs[i], logs[i]
        assert "benchmark slurmb: no run left to run" in logs[i], logs[i]
    # both tasks held a core at the same time (select/cons_tres, CR_Core, 2 CPUs)
    start = [datetime.fromisoformat(t["StartTime"]) for t in tasks.values()]
    end = [datetime.fromisoformat(t["EndTime"]) for t in tasks.values()]
    assert max(start) < min(end), tasks
    assert [s for s, _ in trials(db)] == ["COMPLETE"] * 16
    assert sum(s == "COMPLETE" for s, _ in queued) < 16, f"nothing was left to the tasks: {queued}"
    again = subprocess.run([sys.executable, "-m", "descentlab", *argv], check=False, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "16 already done" in again.stderr, again.stderr
    assert (tmp_path / "bench" / "benchmark.json").is_file() and (tmp_path / "bench" / "report.html").is_file()
