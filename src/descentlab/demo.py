"""`make demo`: train one small network with the classic optimizers side by side.

A stand-in for ``descentlab compare`` until the Trainer and workloads exist:
a 2-layer MLP on a synthetic 10-class problem (Gaussian clusters, generated
from a seed, no download), the same initialization and batches for every
optimizer, and a table of the final training loss and test accuracy.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from . import optim

CLASSIC = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}


def make_data(seed: int = 0, n: int = 4000, dim: int = 20, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 1.5
    y = torch.randint(classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, dim, generator=g) * 2.0
    split = n * 3 // 4
    return (x[:split], y[:split]), (x[split:], y[split:])


def train_one(name: str, train, test, steps: int = 600, batch: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(train[0].shape[1], 64), nn.ReLU(), nn.Linear(64, 10))
    opt = optim.create(name, model.parameters(), lr=LR.get(name, 1e-3))
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(train[1]), (batch,), generator=order)
        loss = loss_fn(model(train[0][idx]), train[1][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        full_loss = float(loss_fn(model(train[0]), train[1]))
        accuracy = float((model(test[0]).argmax(1) == test[1]).float().mean())
    return full_loss, accuracy, seconds


def main() -> None:
    train, test = make_data()
    names = [n for n in CLASSIC if n in optim.available()]
    print(f"descentlab demo: MLP 20-64-10 on synthetic clusters, 600 steps of batch 64, seed 0")
    print(f"{'optimizer':<10} {'lr':>7} {'train loss':>11} {'test acc':>9} {'seconds':>8}")
    for name in names:
        loss, acc, secs = train_one(name, train, test)
        print(f"{name:<10} {LR.get(name, 1e-3):>7g} {loss:>11.4f} {acc:>9.3f} {secs:>8.2f}")


if __name__ == "__main__":
    main()
