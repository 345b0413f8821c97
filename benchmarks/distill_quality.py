"""Does a distilled student beat the same student trained from scratch? Measured per seed.

Default mode: for each seed (0, 1, 2), on mnist1d-cnn at the full recipe budget
(4000 steps of Adam, batch 100), ``descentlab.compress.distill`` trains the
teacher (the workload's CNN), the student distilled from it, and the same
student from scratch (same seed's initialisation, optimizer, schedule, batches
and budget; only the loss differs). Prints a Markdown table, the mean margin
(distilled - scratch test accuracy) and its spread (min/max per-seed margin).

``--choose``: the measurement behind the defaults, on seed 0 only: one teacher,
then for each candidate student its scratch run and a distilled run for every
(T, alpha) of the grid.

    .venv/bin/python benchmarks/distill_quality.py [--workload mnist1d-cnn] [--seeds 0,1,2]
        [--student ARCH] [--temperature T] [--alpha A] [--steps N]
    .venv/bin/python benchmarks/distill_quality.py --choose [--students cnn-8,cnn-5,mlp-32]
        [--temperatures 2,4] [--alphas 0.5,0.9]

One torch thread throughout.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descentlab.compress.arch import resolve_arch
from descentlab.compress.distill import A_DEFAULT, T_DEFAULT
from descentlab.compress.distill_run import distill, train_scratch, train_student
from descentlab.compress.fit import evaluate, plan_for, train_dense
from descentlab.compress.measure import parameters


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def choose(args: argparse.Namespace) -> None:
    seed = 0
    plan = plan_for(args.workload, seed=seed, steps=args.steps)
    wl = plan["workload"]
    started = time.perf_counter()
    teacher = train_dense(plan_for(args.workload, seed=seed), seed=seed).model
    t_acc = evaluate(wl, teacher)["accuracy"]
    print(f"teacher {wl.name}: {parameters(teacher):,} parameters, test accuracy {t_acc:.4f} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    print("\n| student | parameters | scratch | T | alpha | distilled | margin (points) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arch in args.students.split(","):
        make = resolve_arch(arch, wl)
        scratch, _ = train_scratch(plan, make, seed=seed)
        s_acc = evaluate(wl, scratch)["accuracy"]
        for t in _floats(args.temperatures):
            for a in _floats(args.alphas):
                student, _ = train_student(plan, make, teacher, seed=seed, temperature=t, alpha=a)
                d_acc = evaluate(wl, student)["accuracy"]
                print(f"| {arch} | {parameters(student):,} | {s_acc:.4f} | {t:g} | {a:g} | {d_acc:.4f} | "
                      f"{100 * (d_acc - s_acc):+.2f} |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def seeds(args: argparse.Namespace) -> None:
    rows = []
    started = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        r = distill(args.workload, student=args.student, seed=seed, temperature=args.temperature, alpha=args.alpha,
                    steps=args.steps, log=lambda *_: None).summary
        rows.append(r)
        print(f"seed {seed}: teacher {r['teacher']['test_accuracy']:.4f}, student {r['student']['test_accuracy']:.4f}, "
              f"scratch {r['scratch']['test_accuracy']:.4f} ({r['wall_seconds']:.0f} s)", flush=True)
    r0 = rows[0]
    print(f"\n{r0['workload']}, {r0['steps']} steps, student {r0['student']['arch']} "
          f"({r0['student']['parameters']:,} parameters; teacher {r0['teacher']['parameters']:,}), "
          f"T={r0['temperature']:g}, alpha={r0['alpha']:g}\n")
    print("| seed | teacher | distilled student | student from scratch | margin (points) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['teacher']['test_accuracy']:.4f} | {r['student']['test_accuracy']:.4f} | "
              f"{r['scratch']['test_accuracy']:.4f} | {100 * r['margin']:+.2f} |")
    margins = [100 * r["margin"] for r in rows]
    mean = {k: statistics.mean(r[k]["test_accuracy"] for r in rows) for k in ("teacher", "student", "scratch")}
    print(f"| mean | {mean['teacher']:.4f} | {mean['student']:.4f} | {mean['scratch']:.4f} | "
          f"{statistics.mean(margins):+.2f} |")
    print(f"\nmean margin {statistics.mean(margins):+.2f} points, per-seed min {min(margins):+.2f}, "
          f"max {max(margins):+.2f}; {time.perf_counter() - started:.0f} s in all")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="mnist1d-cnn")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--student", default=None, help="default: the workload's measured default student")
    p.add_argument("--temperature", type=float, default=T_DEFAULT)
    p.add_argument("--alpha", type=float, default=A_DEFAULT)
    p.add_argument("--steps", type=int, default=None, help="student budget (default: the recipe's)")
    p.add_argument("--choose", action="store_true", help="the (student, T, alpha) grid on seed 0")
    p.add_argument("--students", default="cnn-8,cnn-5,mlp-32")
    p.add_argument("--temperatures", default="2,4")
    p.add_argument("--alphas", default="0.5,0.9")
    args = p.parse_args()
    torch.set_num_threads(1)
    (choose if args.choose else seeds)(args)


if __name__ == "__main__":
    main()
