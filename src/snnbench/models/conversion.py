"""The conversion study's DNNs: the reference MLP (784-256-10, ReLU), a small CNN and a small
ResNet-style CNN. The MLP and the CNN take flat 784-pixel MNIST images in [0, 1], the ResNet-style
CNN image-shaped ones, (N, 1, 28, 28) (``INPUT_SHAPES``). All return logits and use only ops that
:mod:`snnbench.conversion.onnx_ops` converts."""

import torch
import torch.nn.functional as F
from torch import nn

from snnbench.errors import ConfigError

ARCHS = ("mlp", "cnn", "resnet")
N_PIXELS = 784
INPUT_SHAPES = {"mlp": (N_PIXELS,), "cnn": (N_PIXELS,), "resnet": (1, 28, 28)}  # per sample


def reference_mlp(hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Linear(N_PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class ToImage(nn.Module):
    """Flat pixels -> (N, 1, 28, 28); exports as one Reshape with a constant shape."""

    def forward(self, x):
        return x.reshape(-1, 1, 28, 28)


def small_cnn() -> nn.Module:
    """28x28 -> conv5 (8) -> pool2 -> conv5 (16) -> pool2 -> dense 10 (average pooling only)."""
    return nn.Sequential(
        ToImage(),
        nn.Conv2d(1, 8, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


class SmallResNet(nn.Module):
    """(N, 1, 28, 28) -> conv3 (8) + ReLU -> MaxPool 2 -> residual block [conv3 (8) + ReLU ->
    conv3 (8), + the block's input, ReLU] -> Concat(block output, conv1 (8) + ReLU of it) ->
    AvgPool 2 -> conv3 (16, valid) + ReLU -> global average pool -> linear 10.

    "conv3" keeps the size (padding 1): every op is one that the converter reads, and the graph
    holds each kind it handles beyond a chain (MaxPool, a residual Add, a Concat)."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.block1 = nn.Conv2d(width, width, 3, padding=1)
        self.block2 = nn.Conv2d(width, width, 3, padding=1)
        self.branch = nn.Conv2d(width, width, 1)
        self.head = nn.Conv2d(2 * width, 2 * width, 3)
        self.out = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.stem(x)), 2)                     # (w, 14, 14)
        x = torch.relu(self.block2(torch.relu(self.block1(x))) + x)       # residual block
        x = torch.cat([x, torch.relu(self.branch(x))], dim=1)             # (2w, 14, 14)
        x = torch.relu(self.head(F.avg_pool2d(x, 2)))                     # (2w, 5, 5)
        return self.out(F.adaptive_avg_pool2d(x, 1).flatten(1))           # global average pool


def build_model(arch: str) -> nn.Module:
    builders = dict(zip(ARCHS, (reference_mlp, small_cnn, SmallResNet)))
    if arch not in builders:
        raise ConfigError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}")
    return builders[arch]()
