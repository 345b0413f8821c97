"""The source of a user's workload file that tests write into their tmp folder
(not one of the built-ins): three data forms, each ``FUNC(seed=0)``.

* ``tensors``: in-memory (x, y) tensors, CrossEntropyLoss, accuracy;
* ``dict_dataset``: a map-style Dataset of dict items (Hugging Face style),
  a model called with keyword inputs, metric accuracy;
* ``own_loss``: the same Dataset and a model that returns its own loss
  (``loss_fn=None``), a callable metric with its direction;
plus broken factories for the error tests.
"""

SOURCE = '''
import torch
from torch import nn

from descentlab.workloads import Workload

SIZES = (0, 600, 800, 1000)


def blobs(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    centers = torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 2.5]])
    y = torch.randint(0, 3, (SIZES[-1],), generator=g)
    x = centers[y] + 0.9 * torch.randn(SIZES[-1], 2, generator=g)
    return x, y


def mlp():
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))


def tensors(seed=0):
    x, y = blobs(seed)
    s = [(x[a:b], y[a:b]) for a, b in zip(SIZES, SIZES[1:])]
    return Workload(name="blobs", train=s[0], val=s[1], test=s[2], make_model=mlp,
                    loss_fn=nn.CrossEntropyLoss(), metric="accuracy")


class Items(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"inputs": self.x[i], "labels": self.y[i]}


class KeywordNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, inputs, labels=None):
        logits = self.net(inputs)
        if labels is None:
            return logits
        return {"logits": logits, "loss": nn.functional.cross_entropy(logits, labels)}


def _datasets(seed):
    x, y = blobs(seed)
    return [Items(x[a:b], y[a:b]) for a, b in zip(SIZES, SIZES[1:])]


def dict_dataset(seed=0):
    d = _datasets(seed)
    return Workload(name="blobs-dict", train=d[0], val=d[1], test=d[2], make_model=KeywordNet,
                    loss_fn=nn.CrossEntropyLoss(), metric="accuracy")


def error_rate(logits, labels):
    return (logits.argmax(1) != labels).float().mean().item()


def own_loss(seed=0):
    d = _datasets(seed)
    return Workload(name="blobs-own-loss", train=d[0], val=d[1], test=d[2], make_model=KeywordNet,
                    loss_fn=None, metric=error_rate, metric_mode="min", metric_range=(0.0, 1.0))


def not_a_workload(seed=0):
    return 42


def raises(seed=0):
    raise RuntimeError("the data server is down\\nsecond line")
'''

FORMS = ("tensors", "dict_dataset", "own_loss")


def write(folder):
    """Write the file into ``folder``; returns its path."""
    from pathlib import Path

    path = Path(folder) / "my_problem.py"
    path.write_text(SOURCE)
    return path
