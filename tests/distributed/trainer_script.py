"""A user's script with the Trainer: run as it is, or under torchrun (tests/distributed/test_torchrun.py)."""

import sys

import torch
from torch import nn

from descentlab import optim
from descentlab.train import Trainer


def main(out: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g, dtype=torch.float64)
    y = (x[:, :3].sin().sum(1) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)).double()
    opt = optim.create("adamw", model.parameters(), lr=1e-2)
    distributed = "RANK" in __import__("os").environ
    trainer = Trainer(model, opt, nn.functional.cross_entropy, batch_size=64, distributed=distributed, device="cpu")
    trainer.fit((x, y), max_steps=50)
    if trainer.rank == 0:
        torch.save(model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1])
