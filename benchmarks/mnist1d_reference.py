"""MNIST-1D reference accuracies: descentlab's workloads against the published figures.

Trains mnist1d-logreg, mnist1d-mlp and mnist1d-cnn with each workload's default recipe -- Adam lr 1e-2, L2 3e-4,
batch 100, 4000 steps, the last 400 decayed linearly to 0 (WSD) -- in a plain
PyTorch loop, and prints the final test accuracy beside the published one
(Greydanus 2020, "Scaling down deep learning"; the mnist1d README):
logistic regression 32%, MLP 68%, CNN 94%.

Each seed fixes both the validation hold-out (10% of the 4000 training
signals, so the models train on 3600; the published figures used all 4000)
and the model's initialisation.

    python benchmarks/mnist1d_reference.py                 # 3 seeds, ~2-3 min on 2 CPU cores
    python benchmarks/mnist1d_reference.py --seeds 1
    python benchmarks/mnist1d_reference.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from descentlab import optim, schedules, workloads


def train(w: workloads.Workload, seed: int) -> dict[str, float]:
    """Run the workload's recipe once; final test and validation accuracy."""
    r = w.recipe
    torch.manual_seed(seed)
    model = w.make_model()
    opt = optim.create(r["optimizer"], model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"],
                       **r["optimizer_kwargs"])
    sched = schedules.create(r["schedule"], opt, **r["schedule_kwargs"]) if r["schedule"] else None
    batches = w.batches("train", r["batch_size"], seed=seed)
    steps = r["steps"] if r["steps"] is not None else r["epochs"] * len(batches)
    start, step = time.perf_counter(), 0
    model.train()
    while step < steps:
        for x, y in batches:
            loss = w.loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            if step == steps:
                break
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        return {
            "test_accuracy": w.metric_fn(model(w.test[0]), w.test[1]),
            "val_accuracy": w.metric_fn(model(w.val[0]), w.val[1]),
            "train_accuracy": w.metric_fn(model(w.train[0]), w.train[1]),
            "seconds": seconds,
            "steps": steps,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: these models are too small to gain from more)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    names = ["mnist1d-logreg", "mnist1d-mlp", "mnist1d-cnn"]
    results: dict[str, list[dict[str, float]]] = {}
    t0 = time.perf_counter()
    workloads.load(names[0])  # generate (or read) the cached data set before timing anything
    print(f"# data ready in {time.perf_counter() - t0:.1f}s; recipe: {workloads.load(names[0]).recipe}",
          flush=True)
    for name in names:
        results[name] = []
        for seed in range(args.seeds):
            run = train(workloads.load(name, seed=seed), seed)
            results[name].append(run)
            print(f"{name:15s} seed {seed}: test {100 * run['test_accuracy']:.1f}%  "
                  f"val {100 * run['val_accuracy']:.1f}%  train {100 * run['train_accuracy']:.1f}%  "
                  f"{run['seconds']:.1f}s", flush=True)

    print()
    print(f"{'workload':15s} {'published':>9s} {'test acc. mean':>14s} {'min-max':>12s} {'s/run':>6s}")
    summary = {}
    for name, runs in results.items():
        accs = [100 * r["test_accuracy"] for r in runs]
        published = 100 * workloads.load(name).info["published_test_accuracy"]
        secs = statistics.mean(r["seconds"] for r in runs)
        print(f"{name:15s} {published:8.0f}% {statistics.mean(accs):13.1f}% "
              f"{min(accs):5.1f}-{max(accs):4.1f}% {secs:6.1f}")
        summary[name] = {"published_test_accuracy": published / 100, "runs": runs}
    total = time.perf_counter() - t0
    print(f"# total {total:.0f}s, torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": summary, "seconds": total, "torch": torch.__version__,
                       "threads": args.threads, "recipe": workloads.load(names[0]).recipe}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
