"""Data-parallel strategies on mnist1d-cnn: throughput, bytes per step, accuracy.

    .venv/bin/python benchmarks/distributed.py                   # every part, ~10 min on 2 cores
    .venv/bin/python benchmarks/distributed.py --parts bytes     # some parts: throughput,bytes,latency,accuracy
    .venv/bin/python benchmarks/distributed.py --seeds 0 --json out.json

1. **Throughput**: training samples per second (steps × global batch / training
   seconds) of 1 process and of 2 processes with each of ddp, zero, fsdp and
   diloco (sync_every 20), at the same global batch (the recipe's 100) and step
   budget (``--steps``, 400). The time is the Trainer's ``train_seconds`` (forward,
   backward and step only), read by a callback after step ``--skip`` (20) and
   after the last step: the first steps hold one-time costs (DDP's bucket
   set-up, FSDP's lazy initialisation), so the window is steps 21..400 — for
   DiLoCo exactly 19 periods of 20 steps (the whole budget's figure is printed
   too). The variants alternate, forwards then backwards, ``--repeat`` (3) times
   in this one run; the medians are compared with the 1-process one. No
   evaluation runs inside the budget (``eval_every`` = the budget), and the
   workers run the strategies as ``train`` does (DDP's built-in all-reduce, no
   counting).
2. **Bytes per step**: each strategy again for ``--byte-steps`` (100) steps, this
   time with ``descentlab.distributed.traffic.count()`` open from the first
   epoch's start (after the model, the optimizer and DDP are built, so DDP's and
   DiLoCo's one-time parameter broadcasts are outside it; also after the
   Trainer's start-of-fit check of the ranks' positions) to the end of the last
   step (before the final evaluation). ddp and zero use the ``allreduce``
   communication hook: DDP's built-in all-reduce is C++ and invisible to the
   counter; torch's Python hook is numerically the same and is counted. The
   counted bytes are payloads (see traffic.py); the "ring" column turns them into
   the bytes one process sends in a ring algorithm with W processes. DDP with
   the PowerSGD hook (rank 1, hooks.POWERSGD) is counted too; its first 2 steps
   are plain all-reduces, so read the column of steps 21..``--byte-steps``.
   Not counted: functional collectives issued from C++ (under FSDP2 the
   Diagnostics callback's DTensor norms, every total/50 steps).
3. **Latency**: the mean time of one gloo all-reduce between the 2 workers (4 bytes,
   the Trainer's per-step loss; 20,840 bytes, the model), to read the throughput by.
4. **Accuracy**: the recipe's full budget (4000 steps), ``descentlab train
   --workload mnist1d-cnn`` in 1 process and with ``--nproc 2 --strategy
   ddp|diloco --sync-every 20``, each in a new process, final test accuracy from
   summary.json, for each of ``--seeds``.

Workers are this script (``--worker SPEC``) under torch's elastic agent
(``descentlab.distributed.launch.launch``), one thread each, as ``train`` runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORKLOAD = "mnist1d-cnn"
STRATEGIES = ("ddp", "zero", "fsdp", "diloco")
#: bytes one process sends in a ring over W processes, per counted payload byte (traffic.py's docstring;
#: a broadcast whose root rotates over the W processes, as ZeRO's do, averages (W-1)/W per process)
RING = {
    "all_reduce": lambda w: 2 * (w - 1) / w,
    "all_gather": lambda w: w - 1,
    "all_gather_into_tensor": lambda w: w - 1,
    "all_gather_single": lambda w: w - 1,
    "_all_gather_base": lambda w: w - 1,
    "reduce_scatter": lambda w: (w - 1) / w,
    "reduce_scatter_tensor": lambda w: (w - 1) / w,
    "reduce_scatter_single": lambda w: (w - 1) / w,
    "_reduce_scatter_base": lambda w: (w - 1) / w,
    "broadcast": lambda w: (w - 1) / w,
}


# -- the worker ------------------------------------------------------------------------


def worker(spec_path: str) -> int:
    import torch
    import torch.distributed as dist

    from descentlab.distributed import traffic
    from descentlab.experiment.config import TrainConfig, validate
    from descentlab.experiment.run import run_training
    from descentlab.train.callbacks import Callback

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    class Meter(Callback):
        """train_seconds, and with counting the traffic so far, at the end of the steps in ``marks``."""

        def __init__(self, marks: list[int], count: bool):
            self.marks, self.count = set(marks), count
            self.seconds: dict[int, float] = {}
            self.traffic: dict[int, dict[str, Any]] = {}
            self._stack = contextlib.ExitStack()
            self._open: Any = None

        def on_epoch_start(self, trainer) -> None:
            if self.count and self._open is None:
                self._open = self._stack.enter_context(traffic.count())

        def on_step_end(self, trainer, logs) -> None:
            if trainer.step not in self.marks:
                return
            self.seconds[trainer.step] = trainer.train_seconds
            if self._open is not None:
                t = self._open
                self.traffic[trainer.step] = {"bytes": t.bytes, "calls": t.calls,
                                              "by_function": {k: [v.calls, v.bytes] for k, v in t.by_function.items()}}

        def on_fit_end(self, trainer) -> None:
            self._stack.close()

    if world > 1:
        from datetime import timedelta

        dist.init_process_group("gloo", timeout=timedelta(seconds=300))
    if "latency" in spec:
        return latency_worker(spec, rank)
    try:
        config = validate(TrainConfig(**{**spec["config"], "nproc": world}))
        meter = Meter(spec["marks"], spec["count"])
        summary = run_training(config, log=lambda msg: None, callbacks=[meter])
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0:
        out = {"steps": summary["steps"], "train_seconds": summary["train_seconds"],
               "batch_size": summary["batch_size"], "seconds": meter.seconds, "traffic": meter.traffic}
        Path(spec["result"]).write_text(json.dumps(out))
    return 0


def latency_worker(spec: dict[str, Any], rank: int) -> int:
    """Seconds per all-reduce of each size in ``spec["latency"]`` (bytes), after a warm-up."""
    import torch
    import torch.distributed as dist

    out = {}
    for nbytes in spec["latency"]:
        t = torch.ones(nbytes // 4)
        for _ in range(50):
            dist.all_reduce(t)
        start = time.perf_counter()
        for _ in range(spec["calls"]):
            dist.all_reduce(t)
        out[nbytes] = (time.perf_counter() - start) / spec["calls"]
    dist.destroy_process_group()
    if rank == 0:
        Path(spec["result"]).write_text(json.dumps(out))
    return 0


def run_workers(config: dict[str, Any], nproc: int, marks: list[int], count: bool, tmp: Path) -> dict[str, Any]:
    from descentlab.distributed.launch import launch

    spec, result = tmp / "spec.json", tmp / "result.json"
    result.unlink(missing_ok=True)
    spec.write_text(json.dumps({"config": config, "marks": marks, "count": count, "result": str(result)}))
    launch([sys.executable, os.path.abspath(__file__), "--worker", str(spec)], nproc, env={"OMP_NUM_THREADS": "1"})
    out = json.loads(result.read_text())
    out["seconds"] = {int(k): v for k, v in out["seconds"].items()}
    out["traffic"] = {int(k): v for k, v in out["traffic"].items()}
    return out


# -- the parts -------------------------------------------------------------------------


def variants() -> list[tuple[str, int, dict[str, Any]]]:
    out = [("1 process", 1, {})]
    out += [(f"2 processes, {s}", 2, {"strategy": s, "sync_every": 20}) for s in STRATEGIES]
    return out


def throughput(a: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    base = {"workload": WORKLOAD, "steps": a.steps, "eval_every": a.steps, "device": "cpu", "quiet": True}
    order = variants()
    rates: dict[str, list[float]] = {label: [] for label, _, _ in order}
    whole: dict[str, list[float]] = {label: [] for label, _, _ in order}
    for r in range(a.repeat):
        for label, nproc, extra in order if r % 2 == 0 else order[::-1]:
            out = run_workers({**base, **extra}, nproc, [a.skip, a.steps], False, tmp)
            seconds = out["seconds"][a.steps] - out["seconds"][a.skip]
            rates[label].append((a.steps - a.skip) * out["batch_size"] / seconds)
            whole[label].append(out["steps"] * out["batch_size"] / out["train_seconds"])
            print(f"  {label}: {rates[label][-1]:.0f} samples/s (whole budget: {whole[label][-1]:.0f})", flush=True)
    one, one_whole = statistics.median(rates[order[0][0]]), statistics.median(whole[order[0][0]])
    rows = [{"variant": label, "median": statistics.median(v), "each": v, "ratio": statistics.median(v) / one,
             "whole_median": statistics.median(whole[label]),
             "whole_ratio": statistics.median(whole[label]) / one_whole} for label, v in rates.items()]
    print(f"\nThroughput, global batch 100, median of {a.repeat}; steps {a.skip + 1}..{a.steps} and all {a.steps}:\n")
    print(f"| variant | samples/s, steps {a.skip + 1}..{a.steps} (median) | each | vs 1 process | "
          f"samples/s, all {a.steps} steps (median) | vs 1 process |\n|---|---:|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['median']:.0f} | {', '.join(f'{x:.0f}' for x in row['each'])} | "
              f"**{row['ratio']:.2f}** | {row['whole_median']:.0f} | {row['whole_ratio']:.2f} |")
    return rows


def ring_bytes(by_function: dict[str, list[int]], world: int) -> float:
    return sum(RING.get(name, lambda w: 1.0)(world) * nbytes for name, (_, nbytes) in by_function.items())


def communication(a: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    steps = a.byte_steps
    base = {"workload": WORKLOAD, "steps": steps, "eval_every": steps, "device": "cpu", "quiet": True}
    rows = []
    cases = [(s, {"strategy": s, "sync_every": 20, **({"comm_hook": "allreduce"} if s in ("ddp", "zero") else {})})
             for s in STRATEGIES]
    cases.append(("ddp + powersgd (rank 1)", {"strategy": "ddp", "comm_hook": "powersgd"}))
    for s, extra in cases:
        out = run_workers({**base, **extra}, 2, [20, steps], True, tmp)
        end, first = out["traffic"][steps], out["traffic"][20]
        per = end["bytes"] / steps
        steady = (end["bytes"] - first["bytes"]) / (steps - 20)
        rows.append({"strategy": s, "bytes_per_step": per, "steady_bytes_per_step": steady,
                     "calls_per_step": end["calls"] / steps, "ring_per_step": ring_bytes(end["by_function"], 2) / steps,
                     "by_function": end["by_function"]})
        print(f"  {s}: {per:.1f} B/step ({steady:.1f} over steps 21..{steps}), {end['by_function']}", flush=True)
    ddp = next(r for r in rows if r["strategy"] == "ddp")["bytes_per_step"]
    print(f"\nBytes per step per process, 2 processes, {steps} steps counted (payloads; ring: sent by one process):\n")
    print(f"| strategy | payload B/step | vs ddp | steps 21..{steps}: B/step | collectives/step | ring-sent B/step | "
          "by function: calls, bytes |\n|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        fns = "; ".join(f"{k} {c}× {b:,} B" for k, (c, b) in sorted(r["by_function"].items()))
        print(f"| {r['strategy']} | {r['bytes_per_step']:,.1f} | {r['bytes_per_step'] / ddp:.3f} | "
              f"{r['steady_bytes_per_step']:,.1f} | {r['calls_per_step']:.2f} | {r['ring_per_step']:,.1f} | {fns} |")
    diloco = next(r for r in rows if r["strategy"] == "diloco")["bytes_per_step"]
    print(f"\nDiLoCo / DDP bytes per step: {diloco / ddp:.4f} (1/{ddp / diloco:.1f}; requirement <= 1/15)")
    return rows


def latency(a: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """The cost of one gloo all-reduce on this machine's loopback: a 4-byte one (the Trainer's loss) and
    one of the model's 20,840 parameter bytes."""
    from descentlab.distributed.launch import launch

    spec, result = tmp / "spec.json", tmp / "latency.json"
    spec.write_text(json.dumps({"latency": [4, 20840], "calls": 1000, "result": str(result)}))
    launch([sys.executable, os.path.abspath(__file__), "--worker", str(spec)], 2, env={"OMP_NUM_THREADS": "1"})
    out = json.loads(result.read_text())
    print("\nOne gloo all-reduce, 2 processes, loopback, mean of 1000:\n")
    print("| payload | µs per all-reduce |\n|---:|---:|")
    for nbytes, seconds in out.items():
        print(f"| {int(nbytes):,} B | {seconds * 1e6:.0f} |")
    return out


def accuracy(a: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    variants = [("1 process", []), ("2 processes, ddp", ["--nproc", "2", "--strategy", "ddp"]),
                ("2 processes, diloco H=20", ["--nproc", "2", "--strategy", "diloco", "--sync-every", "20"])]
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in variants}
    for seed in a.seeds:
        for i, (label, args) in enumerate(variants):
            out = tmp / f"acc-{seed}-{i}"
            cmd = [sys.executable, "-m", "descentlab", "train", "--workload", WORKLOAD, *args, "--seed", str(seed),
                   "--out", str(out), "--quiet"]
            start = time.perf_counter()
            done = subprocess.run(cmd, check=False, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
            summary = json.loads((out / "summary.json").read_text())
            results[label].append({"seed": seed, "test": summary["final"]["test_accuracy"],
                                   "train_seconds": summary["train_seconds"], "wall": wall})
            print(f"  seed {seed}, {label}: test {summary['final']['test_accuracy']:.3f}, "
                  f"{summary['train_seconds']:.1f} s training, {wall:.1f} s wall", flush=True)
    print(f"\nFinal test accuracy, {WORKLOAD}, recipe budget (4000 steps), seeds {', '.join(map(str, a.seeds))}:\n")
    print("| run | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean | train s (mean) |\n|---|"
          + "---:|" * (len(a.seeds) + 2))
    rows = []
    for label, rs in results.items():
        mean = statistics.mean(r["test"] for r in rs)
        rows.append({"run": label, "results": rs, "mean": mean})
        print(f"| {label} | " + " | ".join(f"{r['test']:.3f}" for r in rs) + f" | **{mean:.3f}** | "
              f"{statistics.mean(r['train_seconds'] for r in rs):.1f} |")
    return rows


def load() -> str:
    """The 1-minute load average: other tenants' processes share these cores, and show only there."""
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="throughput,bytes,latency,accuracy")
    p.add_argument("--steps", type=int, default=400, help="throughput: steps per run")
    p.add_argument("--skip", type=int, default=20, help="throughput: steps before the timed window")
    p.add_argument("--repeat", type=int, default=3, help="throughput: repetitions of every variant")
    p.add_argument("--byte-steps", type=int, default=100, help="bytes: steps counted (a multiple of 20)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--json", help="write every number here too")
    a = p.parse_args()
    parts = a.parts.split(",")
    import platform

    import torch

    print(f"# {os.cpu_count()} cores, torch {torch.__version__}, {platform.processor() or platform.machine()}",
          flush=True)
    record: dict[str, Any] = {"args": {k: v for k, v in vars(a).items()}, "torch": torch.__version__}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        for name, part in (("throughput", throughput), ("bytes", communication), ("latency", latency),
                           ("accuracy", accuracy)):
            if name in parts:
                print(f"# {name}: load average {load()} at the start", flush=True)
                record[name] = part(a, Path(tmp))
                print(f"# {name}: load average {load()} at the end", flush=True)
    print(f"\n# {time.perf_counter() - start:.0f} s in all", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
