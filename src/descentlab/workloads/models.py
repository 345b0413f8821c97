"""The workloads' networks: small, CPU-friendly, and built only from ``torch.nn``.

Each builder returns a fresh module whose initial weights come from torch's
global generator (``torch.manual_seed`` before the call makes it reproducible).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class Squeeze(nn.Module):
    """``(N, 1) -> (N,)``: a regression head whose outputs match ``(N,)`` targets."""

    def forward(self, x: Tensor) -> Tensor:
        return x.squeeze(-1)


def mlp(sizes: Sequence[int], *, regression: bool = False) -> nn.Sequential:
    """Fully connected layers ``sizes[0] -> ... -> sizes[-1]`` with ReLU between.

    ``mlp([40, 100, 100, 10])`` is the MNIST-1D MLP; ``mlp([d, 1], ...)`` is a
    linear model. With ``regression=True`` the last size must be 1 and the
    output is squeezed to ``(N,)``.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b))
    if regression:
        if sizes[-1] != 1:
            raise ValueError(f"a regression mlp has one output, got {sizes[-1]}")
        layers.append(Squeeze())
    return nn.Sequential(*layers)


class ConvNet1d(nn.Module):
    """The MNIST-1D CNN of Greydanus (2020), ``ConvBase`` in the mnist1d repository.

    Three 1-D convolutions of ``channels`` channels, each stride 2 with ReLU
    (kernel 5 then 3, 3; padding 1), flattened into a linear classifier. On
    length-40 signals the feature maps have length 19, 10, 5, so the head sees
    25 · 5 = 125 features; 5,210 parameters in all.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, channels: int = 25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        n = length
        for kernel in (5, 3, 3):
            n = (n + 2 - kernel) // 2 + 1
        if n < 1:
            raise ValueError(f"signals of length {length} are too short for ConvNet1d")
        self.head = nn.Linear(channels * n, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.reshape(x.shape[0], 1, x.shape[-1])))


class ConvNet2d(nn.Module):
    """Two blocks of (3×3 convolution, ReLU, 2×2 max-pool), then a linear classifier.

    For ``(N, 1, H, W)`` images with H, W ≥ 4. On 28×28 MNIST with channels
    (16, 32): 16@14×14, 32@7×7, head 1568 → 10; 20,490 parameters.
    """

    def __init__(self, height: int, width: int, num_classes: int = 10,
                 channels: tuple[int, int] = (16, 32)) -> None:
        super().__init__()
        if height < 4 or width < 4:
            raise ValueError(f"ConvNet2d needs images of at least 4x4, got {height}x{width}")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(c2 * (height // 2 // 2) * (width // 2 // 2), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
