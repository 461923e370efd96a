"""The conversion study's DNNs: the reference MLP (784-256-10, ReLU), a small CNN and a small
ResNet-style CNN.

The MLP and the CNN take flat 784-pixel MNIST images in [0, 1]; the ResNet-style CNN takes them
image-shaped, (N, 1, 28, 28), as PyTorch CNNs usually export (``INPUT_SHAPES``). All return
logits and use only ops that :mod:`snnbench.onnx_io` converts. :func:`trained_conversion_model`
trains one with the reference settings (Adam, lr 2e-4, 3 epochs, batch 100, seeded), exports
it to ONNX and caches the folder, so every benchmark converting "the same model" shares it.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snnbench.cache import cached
from snnbench.data import load_features
from snnbench.device import resolve_device
from snnbench.errors import SnnbenchError
from snnbench.onnx_export import OPSET, export_onnx
from snnbench.training import TrainConfig, accuracy, fit, predict_logits, seed_everything

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
    if arch == "mlp":
        return reference_mlp()
    if arch == "cnn":
        return small_cnn()
    if arch == "resnet":
        return SmallResNet()
    raise SnnbenchError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}")


def train_and_export(arch: str, config: TrainConfig, folder: Path, train_limit: int | None = None,
                     device: str = "cpu") -> dict:
    """Train on the MNIST training set (first ``train_limit`` images if given), write
    ``folder/model.onnx`` and ``folder/metrics.json``; return the metrics."""
    train = load_features("image", "train")
    test = load_features("image", "test")
    if train_limit is not None:
        train = train.subset(np.arange(min(train_limit, len(train))))
    seed_everything(config.seed)  # the initial weights are part of the seeded configuration
    model = build_model(arch)
    shape = INPUT_SHAPES[arch]
    torch_device = resolve_device(device)
    empty = (np.zeros((0, *shape), np.float32), np.zeros(0, np.int64))
    started = time.perf_counter()
    result = fit(model, (train.x.reshape(-1, *shape), train.y), empty, config, torch_device)
    seconds = time.perf_counter() - started
    test_acc = accuracy(predict_logits(model, test.x.reshape(-1, *shape), device=torch_device), test.y)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, shape, folder / "model.onnx")
    metrics = {"arch": arch, "epochs": config.epochs, "lr": config.lr, "batch_size": config.batch_size,
               "seed": config.seed, "train_images": len(train), "torch_test_accuracy": test_acc,
               "train_seconds": seconds, "train_samples_per_s": result.samples_per_s,
               "history": result.history, "opset": OPSET, "data_checksums": {**train.checksums, **test.checksums}}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    return metrics


def trained_conversion_model(arch: str = "mlp", epochs: int = 3, lr: float = 2e-4, batch_size: int = 100,
                             seed: int = 0, train_limit: int | None = None) -> Path:
    """Folder with ``model.onnx`` and ``metrics.json`` of a trained model, built once and cached.

    Training runs on the CPU so that the cached weights do not depend on the machine's GPU.
    """
    build_model(arch)  # validates arch before anything is written
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    key = {"arch": arch, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
           "train_limit": train_limit, "opset": OPSET, "version": 2}
    return cached("conversion", key, lambda folder: train_and_export(arch, config, folder, train_limit))
