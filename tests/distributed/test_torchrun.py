"""The engine is torch's own: `train --nproc N` through torch's elastic agent,
`torchrun ... -m descentlab train` from the environment, restarts that resume
exactly, a dead worker named, and nothing listening beyond loopback."""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from descentlab.cli import main
from descentlab.train import checkpoint as ckpt

from ..processes import cli

MLP = ["train", "--workload", "mnist1d-mlp", "--quiet"]
# float64: what differs from one process is then the strategy, not the order of float32 sums
# (which Adam amplifies about tenfold every 20 steps; see double_workload.py)
DOUBLE = ["train", "--workload", f"{Path(__file__).parent / 'double_workload.py'}:make", "--quiet"]


def final(out: Path) -> dict:
    state, _ = ckpt.load_latest(out / "checkpoints")
    return state


def relative(a: dict, b: dict) -> float:
    """The largest relative difference ‖a−b‖/‖a‖ over the model's tensors."""
    return max(float((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp_min(1e-30)) for k in a)


def torchrun(*args: str) -> subprocess.Popen:
    """torchrun itself, on the loopback rendezvous (nothing listens beyond 127.0.0.1; torchrun's
    --standalone is the same worker path with torch's c10d store on every interface): started,
    its output captured; ``finished`` waits for it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--rdzv-backend", "descentlab-loopback",
           "--rdzv-endpoint", "127.0.0.1:0", "--nnodes", "1", "--nproc-per-node", "2", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def started(*procs: subprocess.Popen):
    """Processes started to run beside what this one does meanwhile (the launches here are
    mostly process start-up, on one core at a time); stopped if it fails before they are waited for."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # torch's agent stops its workers on SIGTERM
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """The exit status and standard error of a started process, once it has ended."""
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr if isinstance(stderr, str) else stderr.decode()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """momentum and adamw, 100 steps of mnist1d-mlp in float64: one process, --nproc 2, torchrun (adamw)."""
    root = tmp_path_factory.mktemp("torchrun")
    # torchrun itself for adamw (the same workers as --nproc, started by the user's torchrun),
    # running while this process trains the others
    with started(torchrun("-m", "descentlab", *DOUBLE, "--optimizer", "adamw", "--steps", "100",
                          "--out", str(root / "adamw-torchrun"))) as (user,):
        for opt in ("momentum", "adamw"):
            args = [*DOUBLE, "--optimizer", opt, "--steps", "100"]
            assert main([*args, "--out", str(root / f"{opt}-one")]) == 0
            assert main([*args, "--nproc", "2", "--out", str(root / f"{opt}-nproc")]) == 0
        code, stderr = finished(user)
        assert code == 0, stderr[-2000:]
    return root


@pytest.mark.parametrize("opt, how", [("momentum", "nproc"), ("adamw", "nproc"), ("adamw", "torchrun")])
def test_two_processes_equal_one(runs, opt, how):
    one, two = runs / f"{opt}-one", runs / f"{opt}-{how}"
    a, b = final(one), final(two)
    assert a["loop"]["step"] == b["loop"]["step"] == 100
    assert relative(a["model"], b["model"]) <= 1e-5
    files = {str(p.relative_to(one)) for p in one.rglob("*")}
    assert files == {str(p.relative_to(two)) for p in two.rglob("*")}  # rank 0 writes what one process writes
    summary = json.loads((two / "summary.json").read_text())
    assert summary["nproc"] == 2 and summary["strategy"] == "ddp" and summary["status"] == "finished"


def _workers(parent: int) -> dict[int, int]:
    """rank -> pid of the workers the agent in ``parent`` started (torchrun's RANK is in their environment)."""
    found = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = pid
    return found


def _kill_rank(proc: subprocess.Popen, out: Path, rank: int, step: int) -> int:
    """SIGKILL worker ``rank`` once rank 0 has checkpointed ``step``; returns the newest checkpoint's step."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(s >= step for s, _ in ckpt.step_checkpoints(out / "checkpoints")):
            break
        time.sleep(0.01)
    workers = _workers(proc.pid)
    assert proc.poll() is None and rank in workers, "the run finished before a worker could be killed"
    os.kill(workers[rank], signal.SIGKILL)
    return max(s for s, _ in ckpt.step_checkpoints(out / "checkpoints"))


LONG = [*MLP, "--optimizer", "adamw", "--steps", "400", "--checkpoint-every", "50", "--nproc", "2"]


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_ends_as_an_uninterrupted_one(tmp_path):
    out, uninterrupted = tmp_path / "run", tmp_path / "whole"
    with started(cli(*LONG, "--max-restarts", "1", "--out", str(out))) as (proc,), \
            ThreadPoolExecutor(1) as pool:
        # the worker is killed from a thread while this process runs the uninterrupted run
        killing = pool.submit(_kill_rank, proc, out, rank=1, step=150)
        assert main([*LONG, "--out", str(uninterrupted)]) == 0
        killed_at = killing.result(timeout=300)
        code, stderr = finished(proc)
    assert code == 0, stderr[-3000:]
    assert killed_at < 400
    a, b = final(uninterrupted), final(out)
    assert b["loop"]["step"] == 400
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for i, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][i][k])), (i, k)
    assert json.loads((out / "summary.json").read_text())["steps"] == 400


@pytest.mark.slow
def test_without_restarts_a_dead_worker_ends_the_job_naming_its_rank(tmp_path):
    out = tmp_path / "run"
    proc = cli(*LONG, "--out", str(out))
    _kill_rank(proc, out, rank=1, step=50)
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - killed < 60
    assert proc.returncode == 1
    err = stderr.decode()
    last = err.strip().splitlines()[-1]
    assert last == "descentlab: failed: ParallelError: data-parallel rank 1 of 2 died: it was killed by SIGKILL"
    assert "Traceback" not in err.split("descentlab: failed")[-1]


FAIL_RANKS = ("1", "0")


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    """The runs whose model raises on rank FAIL_RANK, for each, started together."""
    workload = f"{Path(__file__).parent / 'failing_workload.py'}:make"
    root = tmp_path_factory.mktemp("failing")
    procs = [cli("train", "--workload", workload, "--quiet", "--steps", "10", "--nproc", "2",
                 "--out", str(root / f"run{r}"), env={**os.environ, "FAIL_RANK": r}) for r in FAIL_RANKS]
    with started(*procs):
        yield dict(zip(FAIL_RANKS, procs))


@pytest.mark.slow
@pytest.mark.parametrize("fail_rank", FAIL_RANKS)
def test_the_last_line_is_the_real_error_and_the_rank_that_raised_it(failing, fail_rank):
    """A model that raises on one rank: its exception, type and message, with that
    rank, is the last line, exit 1 — not the other rank's broken connection,
    not "rank 0" by a tie of timestamps."""
    code, stderr = finished(failing[fail_rank], timeout=240)
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert last == (f"descentlab: failed: ParallelError: data-parallel rank {fail_rank} of 2 failed: "
                    "RuntimeError: model exploded on purpose at forward 3")


@pytest.mark.parametrize("argv, words", [
    (["--strategy", "nosuch"], "invalid choice: 'nosuch'"),
    (["--comm-hook", "nosuch"], "invalid comm_hook='nosuch'"),
    (["--strategy", "fsdp", "--comm-hook", "bf16"], "invalid comm_hook='bf16' with strategy='fsdp'"),
    (["--max-restarts", "-1"], "invalid max_restarts=-1"),
    (["--nnodes", "2"], "invalid nnodes='2' without rdzv_endpoint"),
    (["--nnodes", "3:2", "--rdzv-endpoint", "h:1"], "invalid nnodes='3:2'"),
    (["--rdzv-endpoint", "nohost"], "invalid rdzv_endpoint='nohost'"),
    (["--sync-every", "0", "--strategy", "diloco"], "invalid sync_every=0"),
    (["--outer-momentum", "1.0", "--strategy", "diloco"], "invalid outer_momentum=1.0"),
    (["--strategy", "zero", "--optimizer", "prodigy"], "invalid strategy='zero' for optimizer='prodigy'"),
])
def test_bad_distributed_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    assert main([*MLP, "--steps", "5", "--nproc", "2", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.strip().count("\n") == 0, err
    assert not out.exists()


def test_two_machines_on_one_rendezvous_equal_one_process(runs, tmp_path):
    """--nnodes 2 --rdzv-endpoint: two agents ("machines") of one process each, here both on
    127.0.0.1 (the loopback rendezvous; the first agent serves the store on the port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [*DOUBLE, "--optimizer", "adamw", "--steps", "100", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    nodes = [cli(*args, "--out", str(tmp_path / f"node{i}")) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [e.decode()[-2000:] for _, e in outs]
    written = [d for d in (tmp_path / "node0", tmp_path / "node1") if (d / "summary.json").exists()]
    assert len(written) == 1  # rank 0's machine writes, the other says so
    assert any(b"rank 0's machine has the summary" in e for _, e in outs)
    summary = json.loads((written[0] / "summary.json").read_text())
    assert summary["nproc"] == 2 and summary["steps"] == 100
    assert relative(final(runs / "adamw-one")["model"], final(written[0])["model"]) <= 1e-5


def test_a_script_with_the_trainer_runs_under_torchrun_as_it_is(tmp_path):
    script = Path(__file__).parent / "trainer_script.py"
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    with started(torchrun(str(script), str(two))) as (under_torchrun,):
        # meanwhile the script as it is, as __main__, in this process (no RANK here): the reference
        argv = sys.argv
        sys.argv = [str(script), str(one)]
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = argv
        code, stderr = finished(under_torchrun)
        assert code == 0, stderr[-2000:]
    a, b = (torch.load(p, weights_only=True) for p in (one, two))
    assert relative(a, b) <= 1e-5


def test_nothing_of_the_rendezvous_outlives_the_launch(tmp_path):
    """Its stores run server threads: left for a later garbage collection, they can be destroyed
    in a forked child (a DataLoader worker), which then aborts. After launch() none is alive."""
    code = (
        "import gc, sys, os\n"
        "from torch.distributed.elastic.rendezvous.dynamic_rendezvous import DynamicRendezvousHandler\n"
        "from descentlab.distributed.launch import launch\n"
        "launch([sys.executable, '-c', 'pass'], 2)\n"
        "alive = sum(isinstance(o, DynamicRendezvousHandler) for o in gc.get_objects())\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    gc.collect(); os._exit(0)\n"
        "print(alive, os.waitpid(pid, 0)[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "0"]
