"""Your own data and model, end to end: the UCI handwritten digits (scikit-learn's copy, 1,797
grey images of 8x8 pixels, values 0..16), exported as a data set file, a small CNN trained on them
in torch and exported to ONNX, and the snnbench commands that convert it to a spiking network and
sweep noise on it.

    python examples/digits.py --out digits/

writes ``digits/digits.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``: images (N, 8, 8)
in 0..1, a seeded, class-stratified 80/20 split) and ``digits/digits_cnn.onnx`` (input
(batch, 1, 8, 8), any batch size), then prints the commands.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

TEST_FRACTION = 0.2


def export_digits(path: Path, seed: int = 0) -> Path:
    """The digits as a ``.npz`` data set: pixels scaled to 0..1, a seeded stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8), 0..16 -> 0..1
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target.astype(np.int64),
                                                        test_size=TEST_FRACTION, random_state=seed,
                                                        stratify=digits.target)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def digits_cnn() -> nn.Module:
    """8x8 -> conv3 (16) -> avg-pool 2 -> conv3 (32) -> avg-pool 2 -> dense 10: ReLU and average
    pooling only, ops that convert to spiking neurons without approximation."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 2 * 2, 10))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, batch: int = 32) -> nn.Module:
    """Adam on shuffled mini-batches of the training split (the test split is never seen)."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x[:, None]), torch.from_numpy(y)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(targets), generator=generator).split(batch):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(inputs[index]), targets[index]).backward()
            optimiser.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x[:, None])).argmax(1).numpy() == y).mean())


def export_onnx(model: nn.Module, path: Path) -> Path:
    """The model as ONNX, input (batch, 1, 8, 8) with a dynamic batch axis."""
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("digits"), help="folder for digits.npz and digits_cnn.onnx")
    parser.add_argument("--seed", type=int, default=0, help="the train/test split's and the training's seed")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    data_path = export_digits(args.out / "digits.npz", args.seed)
    with np.load(data_path) as data:
        x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    model = train(digits_cnn(), x_train, y_train, args.epochs, args.seed)
    model_path = export_onnx(model, args.out / "digits_cnn.onnx")
    test_accuracy = accuracy(model, x_test, y_test)
    print(f"{len(y_train)} training and {len(y_test)} test images in {data_path}; the CNN's test accuracy "
          f"{100 * test_accuracy:.2f}% ({model_path})")
    print("Convert it to a spiking network and compare the two on the test images:")
    print(f"  snnbench convert --onnx-model {model_path} --dataset {data_path}")
    print("Sweep evaluation noise over the DNN and its spiking conversion:")
    print(f"  snnbench noise_sweep --onnx-model {model_path} --dataset {data_path}")
    return {"data": data_path, "model": model_path, "test_accuracy": test_accuracy}


if __name__ == "__main__":
    main()
