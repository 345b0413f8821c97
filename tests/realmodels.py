"""Real models as user workloads (``--workload tests/realmodels.py:FUNC``), for the
real-model tests: the models people train, not descentlab's own.

* :func:`gpt2` — a Hugging Face ``GPT2LMHeadModel`` (tiny config, random init, no
  download): tied input/output embeddings, dict batches ``{"input_ids", "labels"}``,
  its own loss (``loss_fn=None``), metric the validation loss.
* :func:`resnet` — a small ResNet with BatchNorm (residual blocks, running
  statistics as buffers), on 8×8 digits (scikit-learn's bundled data) as 1×8×8 images.
* :func:`oddparts` — an MLP with a frozen layer (``requires_grad=False``), a
  parameter that never gets a gradient (a head the loss does not use), and a
  buffer (a running count), on the same digits.

Each takes ``dtype`` (``"float64"`` for the equivalence tests of many processes
against one: in float32 the order of the batch sums differs between 1 and 2
processes by about 1e-7, and training amplifies it). ``gpt2_double`` and the
others ``*_double`` are the float64 versions, as workload functions.
"""

from __future__ import annotations

import torch
from torch import nn

from descentlab.workloads import Workload

VOCAB, LENGTH = 48, 16


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


# -- GPT-2 ---------------------------------------------------------------------------


def gpt2_config(n_layer: int = 2):
    import transformers

    return transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=n_layer, n_head=2,
        bos_token_id=0, eos_token_id=0, tie_word_embeddings=True,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # nothing random in a step
    )


def _markov_tokens(n: int, seed: int) -> torch.Tensor:
    """Sequences of a fixed random first-order Markov chain (a sparse transition
    table): a structure a 2-layer model learns in a few hundred steps."""
    g = torch.Generator().manual_seed(1234)  # the chain is the task, the same for every seed
    table = torch.rand(VOCAB, VOCAB, generator=g) ** 8
    table /= table.sum(1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    ids = torch.empty(n, LENGTH, dtype=torch.long)
    ids[:, 0] = torch.randint(0, VOCAB, (n,), generator=g)
    for t in range(1, LENGTH):
        ids[:, t] = torch.multinomial(table[ids[:, t - 1]], 1, generator=g).squeeze(1)
    return ids


class TokenSet(torch.utils.data.Dataset):
    """Dict examples ``{"input_ids", "labels"}`` (the model shifts the labels itself)."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def gpt2(seed: int = 0, dtype: str = "float32", n_layer: int = 2) -> Workload:
    ids = _markov_tokens(768, seed)

    def make_model():
        import transformers

        model = transformers.GPT2LMHeadModel(gpt2_config(n_layer))
        return model.to(_dtype(dtype))

    return Workload(
        name=f"gpt2-tiny{'-float64' if dtype == 'float64' else ''}",
        train=TokenSet(ids[:512]), val=TokenSet(ids[512:640]), test=TokenSet(ids[640:]),
        make_model=make_model, loss_fn=None, metric="loss", task="other",
        recipe={"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "steps": 60},
    )


def gpt2_double(seed: int = 0) -> Workload:
    return gpt2(seed, dtype="float64")


# -- digits, for the ResNet and the odd-parts model -------------------------------------


def _digits(seed: int, dtype: torch.dtype, image: bool):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=dtype) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    if image:
        x = x.view(-1, 1, 8, 8)
    return (x[:1200], y[:1200]), (x[1200:1500], y[1200:1500]), (x[1500:], y[1500:])


class Block(nn.Module):
    """A basic residual block (He et al. 2016): conv-BN-ReLU-conv-BN, plus the input
    (through a 1×1 conv and BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = Block(width, width)
        self.layer2 = Block(width, 2 * width, stride=2)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.head(x.mean((2, 3)))


def resnet(seed: int = 0, dtype: str = "float32") -> Workload:
    train, val, test = _digits(seed, _dtype(dtype), image=True)
    return Workload(
        name=f"resnet-bn{'-float64' if dtype == 'float64' else ''}",
        train=train, val=val, test=test, make_model=lambda: ResNet().to(_dtype(dtype)),
        loss_fn=nn.CrossEntropyLoss(), metric="accuracy", num_classes=10,
        recipe={"optimizer": "momentum", "lr": 0.05, "batch_size": 64, "steps": 60},
    )


def resnet_double(seed: int = 0) -> Workload:
    return resnet(seed, dtype="float64")


# -- frozen layer, unused parameter, buffer ----------------------------------------------


class OddParts(nn.Module):
    """``embed`` is frozen; ``unused`` (a second head) never enters the loss, so it
    never gets a gradient; ``scale`` is a buffer (an input scaling, saved and loaded
    with the model, never trained)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(64, 32)
        self.embed.requires_grad_(False)
        self.hidden = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)
        self.unused = nn.Linear(32, 3)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 64))

    def forward(self, x):
        return self.head(torch.tanh(self.hidden(torch.tanh(self.embed(x * self.scale)))))


def oddparts(seed: int = 0, dtype: str = "float32") -> Workload:
    train, val, test = _digits(seed, _dtype(dtype), image=False)
    return Workload(
        name=f"oddparts{'-float64' if dtype == 'float64' else ''}",
        train=train, val=val, test=test, make_model=lambda: OddParts().to(_dtype(dtype)),
        loss_fn=nn.CrossEntropyLoss(), metric="accuracy", num_classes=10,
        recipe={"optimizer": "adamw", "lr": 3e-3, "batch_size": 64, "steps": 60},
    )


def oddparts_double(seed: int = 0) -> Workload:
    return oddparts(seed, dtype="float64")
