"""Trainer overhead: descentlab.Trainer vs a hand-written PyTorch loop vs Lightning.

Same model (MLP 40-100-100-10), same data (MNIST-1D-sized: 4000 x 40, 10
classes, random), same optimizer (torch.optim.Adam, for-loop), batch 100,
400 optimizer steps, no evaluation, no progress bar. The three loops are run
interleaved, ``--repeats`` times each, in one process; the table gives the
median seconds and the ratio to the hand-written loop.

    .venv/bin/python benchmarks/trainer_overhead.py [--repeats 7] [--steps 400]

Lightning is optional (``pip install lightning``); without it its row is
left out.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from descentlab.train import Trainer

N, D, CLASSES, BATCH = 4000, 40, 10, 100


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g), torch.randint(CLASSES, (N,), generator=g)


def model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, CLASSES))


class _Batches(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def batches(x, y, steps, seed=0):
    """The same shuffled batches for every loop, served by the same kind of
    DataLoader (batch_size=None: the items are batches already)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < steps:
        idx = torch.randperm(N, generator=g)
        out.extend((x[idx[i : i + BATCH]], y[idx[i : i + BATCH]]) for i in range(0, N, BATCH))
    return torch.utils.data.DataLoader(_Batches(out[:steps]), batch_size=None)


def hand_written(x, y, steps):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, foreach=False)
    loss_fn = nn.CrossEntropyLoss()
    data_ = batches(x, y, steps)
    start = time.perf_counter()
    for xb, yb in data_:
        loss = loss_fn(m(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def descentlab_trainer(x, y, steps):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, foreach=False)
    trainer = Trainer(m, opt, nn.CrossEntropyLoss(), device="cpu")
    data_ = batches(x, y, steps)
    start = time.perf_counter()
    trainer.fit(data_, max_steps=steps)
    return time.perf_counter() - start


def lightning_loop(x, y, steps):
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model()
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch, _):
            xb, yb = batch
            return self.loss_fn(self.net(xb), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3, foreach=False)

    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    data_ = batches(x, y, steps)
    start = time.perf_counter()
    trainer.fit(Module(), train_dataloaders=data_)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    x, y = data()
    loops = {"hand-written PyTorch loop": hand_written, "descentlab Trainer": descentlab_trainer}
    try:
        import logging

        import lightning  # noqa: F401

        logging.getLogger("lightning").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        loops["Lightning Trainer (no progress bar)"] = lightning_loop
    except ImportError:
        print("lightning is not installed: its row is left out")
    for fn in loops.values():  # warm-up
        fn(x, y, 20)
    times = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            times[name].append(fn(x, y, args.steps))
    base = statistics.median(times["hand-written PyTorch loop"])
    print(f"MLP 40-100-100-10, batch {BATCH}, {args.steps} steps, median of {args.repeats}, torch {torch.__version__}")
    print("| loop | seconds (median) | vs hand-written |")
    print("|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / base:.3f} |")


if __name__ == "__main__":
    main()
