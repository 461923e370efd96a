"""Deep batch-normalised CNNs trained on MNIST the usual way, exported to ONNX, and the snnbench commands that
convert them to spiking networks: the networks on which a conversion that only calibrates firing rates fails.

* ``vgg5``: five padded 3x3 convolutions (three of them stride 2), each with batch norm, then a dense layer;
* ``resnet8``: a ResNet-8 (a 3x3 stem and three basic blocks; where the shape changes, the shortcut is a 1x1
  stride-2 convolution with batch norm), global average pooling, a dense layer;
* ``separable``: depthwise-separable blocks (a depthwise 3x3 and a pointwise 1x1 convolution, each with batch norm),
  global average pooling, a dense layer.

    python examples/deep_cnns.py --out deep_cnns/

trains each on the 60,000 MNIST training images (pixels in 0..1; Adam, ``--epochs`` epochs, fixed seeds), exports
it with ``torch.onnx.export(..., dynamo=False)`` (batch norm folded into the convolutions, a dynamic batch axis) as
``deep_cnns/<name>.onnx``, prints its accuracy on the 10,000 test images and the commands that convert it.

Calibration alone (``--method calibrated``) loses 17-88 points on them at 8 steps and up to 74 at 32; the default
conversion (error correction per step count, its firing rate validated) keeps them within a point.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

NETWORKS = ("vgg5", "resnet8", "separable")


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> list:
    """A padded convolution without bias, batch norm and (unless ``relu`` is False) a ReLU."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU()] if relu else layers


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv + BN, the shortcut added before the last ReLU (a 1x1 conv + BN where the
    stride or the width changes, the identity otherwise)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c_in, c_out, stride=stride), *conv_bn(c_out, c_out, relu=False))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else \
            nn.Sequential(*conv_bn(c_in, c_out, kernel=1, stride=stride, relu=False))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def vgg5() -> nn.Module:
    """28x28 -> 16 -> 32 (stride 2) -> 32 -> 64 (stride 2) -> 64 (stride 2), 4x4 -> dense 10."""
    return nn.Sequential(*conv_bn(1, 16), *conv_bn(16, 32, stride=2), *conv_bn(32, 32), *conv_bn(32, 64, stride=2),
                         *conv_bn(64, 64, stride=2), nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


def resnet8() -> nn.Module:
    """A 16-channel stem, blocks of 16, 32 (stride 2) and 64 (stride 2) channels, global average pool, dense 10."""
    return nn.Sequential(*conv_bn(1, 16), BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def separable() -> nn.Module:
    """A 16-channel stem, three depthwise-separable blocks (16 -> 32 stride 2, 32 -> 64, 64 -> 64 stride 2),
    global average pool, dense 10."""
    def block(c_in, c_out, stride):
        return [*conv_bn(c_in, c_in, stride=stride, groups=c_in), *conv_bn(c_in, c_out, kernel=1)]
    return nn.Sequential(*conv_bn(1, 16), *block(16, 32, 2), *block(32, 64, 1), *block(64, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (N, 1, 28, 28) in 0..1 and their labels (snnbench's verified copy, $SNNBENCH_DATA)."""
    from snnbench.data.mnist import load_mnist

    data = load_mnist(split)
    return (data.images[:, None] / np.float32(255)).astype(np.float32), data.labels


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, batch: int = 128) -> nn.Module:
    """Adam on shuffled mini-batches of the training images (the test images are never seen)."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(targets), generator=generator).split(batch):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(inputs[index]), targets[index]).backward()
            optimiser.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    hits = sum(int((model(torch.from_numpy(x[a: a + batch])).argmax(1).numpy() == y[a: a + batch]).sum())
               for a in range(0, len(y), batch))
    return hits / len(y)


def export_onnx(model: nn.Module, path: Path) -> Path:
    """The model as ONNX (batch norm folded into the convolutions), input (batch, 1, 28, 28) with a dynamic batch."""
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("deep_cnns"), help="folder for the <name>.onnx files")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, of {', '.join(NETWORKS)}")
    parser.add_argument("--seed", type=int, default=0, help="the weights' and the shuffling's seed")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = sorted(set(names) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown networks {unknown}; choose from {', '.join(NETWORKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    x_train, y_train = mnist("train")
    x_test, y_test = mnist("test")
    results = {}
    for name in names:
        torch.manual_seed(args.seed)
        started = time.perf_counter()
        model = train(globals()[name](), x_train, y_train, args.epochs, args.seed)
        path = export_onnx(model, args.out / f"{name}.onnx")
        results[name] = {"model": path, "test_accuracy": accuracy(model, x_test, y_test)}
        print(f"{name}: {100 * results[name]['test_accuracy']:.2f}% on the 10,000 test images after {args.epochs} "
              f"epochs ({time.perf_counter() - started:.0f} s) -> {path}")
    print("Convert each to a spiking network and compare the two on the first 1,000 test images (no --method: the "
          "corrected conversion where it applies; --method calibrated for calibration alone):")
    for result in results.values():
        print(f"  snnbench convert --onnx-model {result['model']} --test-limit 1000 --steps-list 8,32 --steps 32")
    return results


if __name__ == "__main__":
    main()
