"""charlm: steps per second in the Trainer vs a hand-written nanoGPT-style loop,
and whether ``torch.compile`` of the model helps on the CPU.

The same model (the workload's default GPT), the same batches (the workload's
training windows, batch 32, in the same seeded order), AdamW (descentlab's,
lr 3e-3), one thread, no evaluation. The loops run interleaved, ``--repeats``
times each, in one process; the table gives the median steps per second and
the ratio to the hand-written loop. Compilation happens in an untimed warm-up
(a one-time cost), so the compiled rows time only the steady state.

    .venv/bin/python benchmarks/charlm_loop.py [--steps 60] [--repeats 5] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descentlab import optim, workloads
from descentlab.train import Trainer
from descentlab.train.data import TensorBatches


def batches(wl, steps: int, batch: int):
    """The first ``steps`` training batches, as the Trainer would draw them (seed 0)."""
    source = TensorBatches(*wl.train, batch, seed=0)
    out = []
    epoch = 0
    while len(out) < steps:
        for xb, yb in source.epoch(epoch):
            out.append((xb, yb))
            if len(out) == steps:
                break
        epoch += 1
    return out


def fresh(wl, compile_model: bool):
    torch.manual_seed(0)
    model = wl.make_model()
    opt = optim.create("adamw", model.parameters(), lr=3e-3, weight_decay=0.1)
    return (torch.compile(model) if compile_model else model), opt


def hand_written(wl, data, compile_model: bool) -> float:
    """nanoGPT's train.py inner loop: forward, loss, backward, step, zero_grad."""
    model, opt = fresh(wl, compile_model)
    loss_fn = wl.loss_fn
    for xb, yb in data[:3]:  # warm-up (compilation, first-call costs): not timed
        loss_fn(model(xb), yb).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for xb, yb in data:
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # nanoGPT reads the loss to log it
    return len(data) / (time.perf_counter() - start)


def trainer(wl, data, compile_model: bool) -> float:
    model, opt = fresh(wl, compile_model)
    warm = Trainer(model, opt, wl.loss_fn)
    warm.fit(data[:3], max_steps=3)  # the same warm-up, untimed
    t = Trainer(model, opt, wl.loss_fn)
    start = time.perf_counter()
    t.fit(data, max_steps=len(data))
    return len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wl = workloads.load("charlm")
    data = batches(wl, args.steps, wl.recipe["batch_size"])
    loops = {"hand-written nanoGPT-style loop": lambda: hand_written(wl, data, False),
             "descentlab Trainer": lambda: trainer(wl, data, False)}
    if not args.no_compile:
        loops["hand-written loop, torch.compile(model)"] = lambda: hand_written(wl, data, True)
        loops["descentlab Trainer, torch.compile(model)"] = lambda: trainer(wl, data, True)
    results = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, run in loops.items():
            results[name].append(run())
    base = statistics.median(results["hand-written nanoGPT-style loop"])
    print(f"charlm {wl.info['model']}, batch {wl.recipe['batch_size']}, {args.steps} steps, "
          f"median of {args.repeats}, 1 thread, torch {torch.__version__}")
    print("| loop | steps/s (median) | time per step vs hand-written |")
    print("|---|---|---|")
    for name, values in results.items():
        sps = statistics.median(values)
        print(f"| {name} | {sps:.2f} | {base / sps:.3f} |")


if __name__ == "__main__":
    main()
