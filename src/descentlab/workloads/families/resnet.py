"""``digits-resnet``: a small residual CNN with BatchNorm on scikit-learn's digits.

Stands for AlgoPerf's image classification with ResNets (Dahl et al. 2023,
"Benchmarking Neural Network Training Algorithms", §4: ImageNet ResNet-50, and the
CIFAR-10 ResNet of its development workloads): convolutions, batch normalisation and
residual connections, where BatchNorm's running statistics and its scale invariance
shape what an optimizer (and weight decay) does.

* Data: scikit-learn's bundled 8×8 digits (1797 images, 10 balanced classes), split
  50/25/25 by the seed (see :mod:`._digits`: 899 train, 449 validation, 449 test images),
  pixels standardised with the train set's scalar mean and std, shaped ``(N, 1, 8, 8)``.
* Model (:class:`DigitsResNet`, 19,706 parameters): a 3×3 stem convolution to 16
  channels, BatchNorm, ReLU; a residual block at 8×8 (two 3×3 convolutions with
  BatchNorm, identity shortcut); a downsampling block to 32 channels at 4×4 (stride 2,
  1×1 projection shortcut with BatchNorm); global average pooling and a linear head. As
  in He et al. (2016) the activation follows the sum; each block's last BatchNorm scale
  starts at zero (Goyal et al. 2017), so every block starts as its shortcut. The
  activations are ``nn.ReLU`` modules, so a variant can swap them.
* Metric ``loss``: the validation cross-entropy (lower is better). Decided over
  accuracy: the digits are easy (a trained net gets ~98-99% of 449 validation images, a
  few errors, so accuracy moves in steps of 0.22% and a target near the top is a coin
  toss), while the cross-entropy moves smoothly and still ranks how far training got.
  The recipe reaches 98-99% validation accuracy (see :data:`RECIPE`).
* Recipe: see :data:`RECIPE` and the measurements next to it.
* Held-out variant: ``activation: silu`` (AlgoPerf's ImageNet ResNet-50 variants swap
  the activation for SiLU or GELU). At the recipe, seed 0: final validation loss 0.054
  (ReLU: 0.046).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..base import Workload
from ..recipes import lr_defaults, recipe
from ..registry import register

CHANNELS = (16, 32)
BATCH_SIZE = 32

# Measured on one core (OMP_NUM_THREADS=1), seed 0, 500 steps of batch 32, 20 evaluations;
# best validation loss. lr sweeps at a constant lr: adam 3e-4 / 1e-3 / 3e-3 / 1e-2 ->
# 1.059 / 0.130 / 0.049 / 0.054; momentum 0.01 / 0.03 / 0.1 / 0.3 / 1.0 -> 0.179 / 0.074 /
# 0.051 / 0.059 / 0.111 (0.3 and 1.0 spike to a loss of 9-27 early on). Anchors: adam 3e-3,
# momentum 0.1. The classic optimizers at these defaults (constant lr): sgd 0.5 0.067,
# momentum 0.051, nesterov 0.062, adagrad 0.03 0.065, rmsprop 1.5e-3 0.049, adam 0.049,
# adamw 0.053: all train. The validation loss jumps for an evaluation or
# two mid-run under every optimizer (BatchNorm's running statistics lag the weights).
# Recipe: AdamW 1e-2, weight decay 0.05, 25 warmup steps then cosine to 0 (AlgoPerf's
# ResNet baselines warm up and decay too): final validation loss 0.046 / 0.034 / 0.063 at
# seeds 0 / 1 / 2 (accuracy 0.993 / 0.993 / 0.982), against AdamW 3e-3 constant 0.050 /
# 0.105 / 0.109; 5.5-6 s of CPU a run.
RECIPE = recipe("adamw", 1e-2, batch_size=BATCH_SIZE, steps=500, weight_decay=0.05,
                schedule="warmup_cosine", schedule_kwargs={"warmup_steps": 25, "total_steps": 500})
LRS = lr_defaults(adam=3e-3, momentum=0.1)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """``act(bn(conv(act(bn(conv(x))))) + shortcut(x))``; a 1×1 projection where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = _conv(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2, self.bn2 = _conv(cout, cout), nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)  # the block starts as its shortcut
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.act2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


class DigitsResNet(nn.Module):
    """Stem, one block at full resolution, one downsampling block, pooling, linear head."""

    def __init__(self, channels: tuple[int, int] = CHANNELS, num_classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.stem = nn.Sequential(_conv(1, c1), nn.BatchNorm2d(c1), nn.ReLU())
        self.blocks = nn.Sequential(ResidualBlock(c1, c1), ResidualBlock(c1, c2, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))


@register("digits-resnet", "scikit-learn digits (8x8), residual CNN with BatchNorm (AlgoPerf ResNet family); val loss")
def digits_resnet(seed: int, data_dir=None) -> Workload:
    from . import _digits

    splits = _digits.image_splits(seed)
    return Workload(
        name="digits-resnet", description="scikit-learn digits (8x8), residual CNN with BatchNorm, 16/32 channels",
        task="classification", train=splits[0], val=splits[1], test=splits[2],
        make_model=lambda: DigitsResNet(), loss_fn=nn.CrossEntropyLoss(), metric="loss",
        recipe=dict(RECIPE), lr_defaults=LRS, num_classes=10, seed=seed,
        info={
            "source": _digits.SOURCE,
            "preprocessing": "pixels standardised with the train set's scalar mean and std; shaped (N, 1, 8, 8)",
            "sizes": {name: len(y) for name, (_, y) in zip(("train", "val", "test"), splits)},
            "stands_for": "AlgoPerf ImageNet ResNet-50 / CIFAR-10 ResNet (Dahl et al. 2023)",
        },
    )
