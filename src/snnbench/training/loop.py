"""One seeded, resumable training loop for the suite's torch classifiers (a spiking model aggregates
over its time steps inside ``forward``): it keeps the best-validation weights and can resume from a
checkpoint written after every epoch."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snnbench.evaluation.metrics import accuracy
from snnbench.training.cache import save_atomic
from snnbench.training.recipes import Recipe


@dataclass
class TrainResult:
    best_val_accuracy: float
    best_epoch: int
    history: list = field(default_factory=list)
    best_state: dict = field(default_factory=dict)
    samples_per_s: float = 0.0


def seed_everything(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 1000,
                   device: torch.device = torch.device("cpu")) -> np.ndarray:
    model.eval()
    outputs = [model(torch.as_tensor(x[a:a + batch_size], device=device)).float().cpu().numpy()
               for a in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def fit(model: nn.Module, train: tuple, val: tuple, config: Recipe,
        device: torch.device = torch.device("cpu"), checkpoint: Path | None = None) -> TrainResult:
    """Train with Adam and cross-entropy; ``train``/``val`` are ``(x, y)`` numpy arrays."""
    seed_everything(config.seed)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult(best_val_accuracy=-1.0, best_epoch=-1)
    first_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"].cpu())  # map_location may have moved it
        result = state["result"]
        first_epoch = state["epoch"] + 1
    x_train, y_train = (torch.as_tensor(a) for a in train)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(first_epoch, config.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(y_train), generator=generator)
        loss_sum = 0.0
        for a in range(0, len(order), config.batch_size):
            index = order[a:a + config.batch_size]
            xb, yb = x_train[index].to(device), y_train[index].to(device)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        has_val = len(val[1]) > 0
        val_acc = accuracy(predict_logits(model, val[0], device=device), val[1]) if has_val else float("nan")
        metrics = {"train_loss": loss_sum / len(order), "val_accuracy": val_acc,
                   "epoch_seconds": seconds, "train_samples_per_s": len(order) / seconds}
        result.history.append(metrics)
        if not has_val or val_acc > result.best_val_accuracy:
            result.best_val_accuracy, result.best_epoch = val_acc, epoch
            result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if checkpoint is not None:
            save_atomic({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                         "generator": generator.get_state(), "result": result, "epoch": epoch}, checkpoint)
    if result.history:
        result.samples_per_s = float(np.mean([h["train_samples_per_s"] for h in result.history]))
    if result.best_state:
        model.load_state_dict(result.best_state)
    return result
