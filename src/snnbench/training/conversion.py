"""The conversion study's DNNs trained: :func:`trained_conversion_model` trains one with the
reference settings (Adam, lr 2e-4, 3 epochs, batch 100, seeded), exports it to ONNX and caches
the folder, so every benchmark converting "the same model" shares it."""

import time
from pathlib import Path

import numpy as np

from snnbench.data import load_features
from snnbench.models.conversion import INPUT_SHAPES, build_model
from snnbench.models.export import ONNX_FILE, OPSET, export_onnx
from snnbench.training.cache import cached
from snnbench.evaluation.metrics import accuracy
from snnbench.training.loop import fit, predict_logits, seed_everything
from snnbench.training.recipes import CONVERSION, Recipe


def train_and_export(arch: str, config: Recipe, folder: Path) -> dict:
    """Train on the MNIST training set (its first ``config.train_limit`` images, 0 = all), write
    ``folder/model.onnx``; return the training summary (kept as the cache's ``summary.json``)."""
    train = load_features("image", "train")
    test = load_features("image", "test")
    if config.train_limit:
        train = train.subset(np.arange(min(config.train_limit, len(train))))
    seed_everything(config.seed)  # the initial weights are part of the seeded configuration
    model = build_model(arch)
    shape = INPUT_SHAPES[arch]
    empty = (np.zeros((0, *shape), np.float32), np.zeros(0, np.int64))
    started = time.perf_counter()
    result = fit(model, (train.x.reshape(-1, *shape), train.y), empty, config)
    seconds = time.perf_counter() - started
    test_acc = accuracy(predict_logits(model, test.x.reshape(-1, *shape)), test.y)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, shape, folder / ONNX_FILE)
    return {"arch": arch, "epochs": config.epochs, "lr": config.lr, "batch_size": config.batch_size,
            "seed": config.seed, "train_images": len(train), "torch_test_accuracy": test_acc,
            "train_seconds": seconds, "train_samples_per_s": result.samples_per_s,
            "history": result.history, "opset": OPSET, "data_checksums": {**train.checksums, **test.checksums}}


def trained_conversion_model(arch: str = "mlp", recipe: Recipe = CONVERSION) -> Path:
    """Folder with ``model.onnx`` and ``summary.json`` of a trained model, built once and cached
    (trained on the CPU, so that the cached weights do not depend on the machine's GPU)."""
    build_model(arch)  # validates arch before anything is written
    key = {"arch": arch, "epochs": recipe.epochs, "lr": recipe.lr, "batch_size": recipe.batch_size,
           "seed": recipe.seed, "train_limit": recipe.train_limit or None, "opset": OPSET, "version": 2}
    return cached("conversion", key, lambda folder: train_and_export(arch, recipe, folder))
