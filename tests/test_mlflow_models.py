"""Trained models are MLflow models: the DNN in the ONNX flavour, the snntorch SNN in the
PyTorch flavour; loaded back from the store, each predicts what the cached model predicts, and
metrics logged with its id are linked to it."""

import sys
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from conftest import require_data, suite_logits
from snnbench.tracking import runs as tracking
from snnbench.models.multimodal import ModelSpec
from snnbench.training.grid import trained_multimodal_model
from snnbench.training.suite import TrainSettings, load_trained_multimodal, log_trained_model, test_data as suite_test_data
from snnbench.engines.ort import OrtRunner


def test_trained_models_round_trip_through_the_store(tracking_store, monkeypatch):
    require_data()
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading a model puts its code folder on the path
    settings = TrainSettings(epochs=1, train_limit=100)
    folders = {family: trained_multimodal_model(ModelSpec("image", family, size="S/3"), settings)
               for family in ("dnn", "snn")}
    ids = {}
    scores = {"dnn": 0.25, "snn": 0.75}
    with tracking.benchmark_run("models", {"seed": 0}) as run:
        for family, folder in folders.items():
            ids[family] = log_trained_model(folder, f"image-{family}")
            assert log_trained_model(folder, f"image-{family}") == ids[family]  # once per run
        for family, score in scores.items():
            mlflow.log_metric(f"{family}_test_accuracy", score, model_id=ids[family])
        # the run's own metrics (a summary, the one epoch's loss) are no model's
        mlflow.log_metrics({"summary": 1.0, "train_loss": 0.5}, step=0)
    x = suite_test_data("image", 40).x

    dnn = mlflow.models.get_model_info(f"models:/{ids['dnn']}")
    assert "onnx" in dnn.flavors and dnn.signature.inputs.inputs[0].shape == (-1, 784)
    served = mlflow.pyfunc.load_model(f"models:/{ids['dnn']}").predict(x)
    served = served["logits"] if isinstance(served, dict) else np.asarray(served)
    np.testing.assert_allclose(served, OrtRunner(folders["dnn"] / "model.onnx").predict(x), atol=1e-5)

    assert "pytorch" in mlflow.models.get_model_info(f"models:/{ids['snn']}").flavors
    snn = mlflow.pytorch.load_model(f"models:/{ids['snn']}")
    reference, _, _ = load_trained_multimodal(folders["snn"])
    np.testing.assert_array_equal(suite_logits(snn, x), suite_logits(reference, x))

    for family, model_id in ids.items():
        logged = mlflow.get_logged_model(model_id)
        assert logged.source_run_id == run.info.run_id and logged.name == f"image-{family}"
        assert [(m.key, m.value) for m in logged.metrics] == [(f"{family}_test_accuracy", scores[family])]
        extra = MlflowClient(tracking_store).list_logged_model_artifacts(model_id, "extra_files")
        assert {Path(a.path).name for a in extra} == {"config.json", "summary.json"}
