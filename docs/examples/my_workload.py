"""Three ways to bring your own problem to descentlab (docs/your-own-problem.md).

Run any of them with the command line::

    descentlab train   --workload docs/examples/my_workload.py:tensors --out runs/mine
    descentlab compare --workload docs/examples/my_workload.py:dataset --optimizers sgd,adam --steps 200
    descentlab train   --workload docs/examples/my_workload.py:own_loss --steps 100

or from Python: ``descentlab.compare(tensors, ["sgd", "adam"], steps=200)``.
Each function takes ``seed`` (the data's seed: the split and any random draw)
and returns a :class:`descentlab.workloads.Workload`. descentlab seeds the
model's initialisation itself (``torch.manual_seed(run seed)`` before
``make_model()``), so ``make_model`` just builds a fresh model.
"""

import math

import torch
from torch import nn

from descentlab.workloads import Workload


def _two_moons(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles with noise: a small non-linear problem."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (n,), generator=g)
    angle = torch.rand(n, generator=g) * math.pi
    x = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    x[label == 1] = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)[label == 1]
    x += 0.15 * torch.randn(n, 2, generator=g)
    return x, label


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))


# 1. In-memory tensors: (x, y) pairs. Everything else (recipe, lrs) is defaulted.
def tensors(seed: int = 0) -> Workload:
    x, y = _two_moons(1200, seed)
    return Workload(
        name="two-moons",
        train=(x[:800], y[:800]), val=(x[800:1000], y[800:1000]), test=(x[1000:], y[1000:]),
        make_model=_mlp, loss_fn=nn.CrossEntropyLoss(), metric="accuracy",
        recipe={"optimizer": "adam", "lr": 1e-2, "batch_size": 32, "steps": 300},
    )


# 2. A map-style Dataset whose items are dicts (Hugging Face style); descentlab
#    batches it in a seeded, resumable order (num_workers > 0 works too).
class MoonsDataset(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[i], "labels": self.y[i]}


class DictMLP(nn.Module):
    """Takes the batch's inputs by keyword, as ``model(**batch)`` passes them."""

    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def dataset(seed: int = 0) -> Workload:
    x, y = _two_moons(1200, seed)
    parts = [MoonsDataset(x[a:b], y[a:b]) for a, b in ((0, 800), (800, 1000), (1000, 1200))]
    return Workload(
        name="two-moons-dataset", train=parts[0], val=parts[1], test=parts[2],
        make_model=DictMLP, loss_fn=nn.CrossEntropyLoss(), metric="accuracy",
        target_key="labels",  # the default would find "labels" too
        recipe={"lr": 1e-2, "batch_size": 32, "steps": 300},
    )


# 3. A model that returns its own loss (as Hugging Face models do when the
#    batch holds labels): loss_fn=None; a metric of your own, with its direction.
class ModelWithLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(features)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def error_rate(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of wrong predictions (lower is better)."""
    return (logits.argmax(dim=1) != labels).float().mean().item()


def own_loss(seed: int = 0) -> Workload:
    x, y = _two_moons(1200, seed)
    parts = [MoonsDataset(x[a:b], y[a:b]) for a, b in ((0, 800), (800, 1000), (1000, 1200))]
    return Workload(
        name="two-moons-own-loss", train=parts[0], val=parts[1], test=parts[2],
        make_model=ModelWithLoss, loss_fn=None, metric=error_rate, metric_mode="min", metric_range=(0.0, 1.0),
        recipe={"lr": 1e-2, "batch_size": 32, "steps": 300},
    )
