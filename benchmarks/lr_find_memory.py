"""Peak memory of ``lr_find`` against a training step's, on the CPU.

Each measurement runs in its own process: import torch, make the data, read the
resident set size (baseline), build an MLP large enough for its tensors to
dominate (``--width`` x ``--depth``, 33.6M parameters by default) and an
optimizer that has taken 2 steps (its state exists, as after some training),
then either take ``--steps`` more training steps or run ``lr_find``
(``--num-steps`` steps, 1 sweep). The figure is the peak resident set size
(VmHWM) minus the baseline: what the model, its gradients, the optimizer state,
the activations and, for lr_find, its copy of the starting point cost. There is
no GPU here, so RSS is the measure (on a GPU, torch.cuda.max_memory_allocated
would be).

    .venv/bin/python benchmarks/lr_find_memory.py [--optimizers adam,momentum] [--width 2048] [--depth 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(mode: str, optimizer: str, width: int, depth: int, steps: int, num_steps: int) -> dict:
    import torch
    from torch import nn

    from descentlab import optim
    from descentlab.tune import lr_find

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, width, generator=g), torch.randint(0, 10, (512,), generator=g)
    baseline = _status("VmRSS")
    torch.manual_seed(0)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    opt = optim.create(optimizer, model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(i: int) -> None:
        sel = slice((i * 64) % 512, (i * 64) % 512 + 64)
        loss_fn(model(x[sel]), y[sel]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(2):
        step(i)
    if mode == "train":
        for i in range(steps):
            step(i + 2)
    else:
        lr_find(model, opt, loss_fn, (x, y), batch_size=64, num_steps=num_steps, end_lr=1.0)
    params = sum(p.numel() for p in model.parameters())
    return {"peak_bytes": _status("VmHWM") - baseline, "params": params}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--optimizers", default="adam,momentum")
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--num-steps", type=int, default=20)
    p.add_argument("--child", nargs=2, metavar=("MODE", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.width, args.depth, args.steps, args.num_steps)))
        return 0
    print("| optimizer | parameters | training step peak (MB) | lr_find peak (MB) | ratio |")
    print("|---|---|---|---|---|")
    for optimizer in args.optimizers.split(","):
        peaks = {}
        for mode in ("train", "lr_find"):
            cmd = [sys.executable, __file__, "--child", mode, optimizer, "--width", str(args.width),
                   "--depth", str(args.depth), "--steps", str(args.steps), "--num-steps", str(args.num_steps)]
            peaks[mode] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        train, find = peaks["train"]["peak_bytes"], peaks["lr_find"]["peak_bytes"]
        print(f"| {optimizer} | {peaks['train']['params'] / 1e6:.1f}M | {train / 2**20:.0f} | {find / 2**20:.0f} | "
              f"{find / train:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
