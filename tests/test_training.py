"""The shared training loop: learns, keeps the best-validation weights, resumes exactly."""

import numpy as np
import pytest
import torch
from torch import nn

from snnbench.errors import SnnbenchError
from snnbench.evaluation.metrics import accuracy
from snnbench.training.loop import fit, predict_logits
from snnbench.training.recipes import Recipe


def _blobs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 5)) + np.eye(3, 5)[y] * 3).astype(np.float32)
    return x, y.astype(np.int64)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def test_fit_learns_and_reports_best_validation():
    (x, y), (xv, yv) = _blobs(), _blobs(200, 1)
    model = _model()
    result = fit(model, (x, y), (xv, yv), Recipe(epochs=4, lr=1e-2, batch_size=50))
    assert len(result.history) == 4 and result.best_val_accuracy > 0.9
    assert result.best_val_accuracy == max(h["val_accuracy"] for h in result.history)
    assert accuracy(predict_logits(model, xv), yv) == pytest.approx(result.best_val_accuracy)


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    train, val = _blobs(), _blobs(200, 1)
    full = _model()
    expected = fit(full, train, val, Recipe(epochs=4, lr=1e-2, batch_size=50, seed=3))
    checkpoint = tmp_path / "ckpt.pt"
    fit(_model(), train, val, Recipe(epochs=2, lr=1e-2, batch_size=50, seed=3), checkpoint=checkpoint)
    resumed_model = _model()
    resumed = fit(resumed_model, train, val, Recipe(epochs=4, lr=1e-2, batch_size=50, seed=3),
                  checkpoint=checkpoint)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in expected.history])
    for a, b in zip(full.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.allclose(a, b)


def test_bad_settings_are_rejected():
    with pytest.raises(SnnbenchError, match="bad training settings"):
        Recipe(epochs=1, lr=0)
