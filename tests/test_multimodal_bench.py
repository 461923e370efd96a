"""The multimodal suite's commands: a tiny real run logs its metrics; sweeps resume; bad input."""

import mlflow
from mlflow.tracking import MlflowClient

from conftest import require_data
from snnbench.cli import main
from snnbench.models.multimodal import ModelSpec, TrainSettings, load_trained_multimodal, trained_multimodal_model

TINY = ["--epochs", "1", "--train-limit", "200", "--test-limit", "60", "--size", "S/3", "--device", "cpu"]


def runs_of(experiment: str):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_quick_multimodal_run_logs_metrics(tracking_store):
    require_data()
    assert main(["multimodal", *TINY, "--modalities", "image,audio"]) == 0
    client, parents, children = runs_of("multimodal")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["modality"] for c in children) == ["audio", "image"]
    for child in children:
        metrics = child.data.metrics
        for family in ("dnn", "snn"):
            for name in ("best_val_accuracy", "test_accuracy", "train_samples_per_s", "parameter_count"):
                assert f"{family}_{name}" in metrics, (family, name)
            assert 0.0 <= metrics[f"{family}_test_accuracy"] <= 1.0
            history = client.get_metric_history(child.info.run_id, f"{family}_val_accuracy")
            assert [m.step for m in history] == [0]
        assert abs(metrics["dnn_ort_test_accuracy"] - metrics["dnn_test_accuracy"]) < 0.02
        assert child.data.params["n_test"] == "60"
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "summary.png" in artifacts and "summary.json" in artifacts
    assert any(k.startswith("test_accuracy/image/snn") for k in parents[0].data.metrics)


def test_noise_sweep_reuses_the_trained_model_and_resume_skips_finished(tracking_store):
    require_data()
    args = ["noise_position", *TINY, "--modalities", "audio", "--noise-std", "0.5"]
    assert main(args) == 0
    _, _, children = runs_of("noise_position")
    assert sorted(c.data.params["noise_position"] for c in children) == ["post", "pre"]
    folders = {c.data.tags["snnbench.snn_model_folder"] for c in children}
    assert len(folders) == 1  # trained once, evaluated under each noise
    clean = {c.data.metrics["snn_clean_test_accuracy"] for c in children}
    assert len(clean) == 1 and all("snn_test_accuracy" in c.data.metrics for c in children)
    for child in children:  # ONNX Runtime gets the very noise draws torch got
        assert child.data.metrics["dnn_ort_torch_max_abs_diff"] < 1e-3
        assert child.data.metrics["dnn_ort_test_accuracy"] == child.data.metrics["dnn_test_accuracy"]
    assert main([*args, "--resume"]) == 0
    _, parents, children_after = runs_of("noise_position")
    assert len(parents) == 2 and len(children_after) == 2  # nothing re-run


def test_cached_model_round_trip(tracking_store):
    require_data()
    spec = ModelSpec(modality="audio", family="dnn", size="S/3")
    settings = TrainSettings(epochs=1, train_limit=100)
    folder = trained_multimodal_model(spec, settings)
    assert trained_multimodal_model(spec, settings) == folder
    model, loaded, result = load_trained_multimodal(folder)
    assert loaded == spec and (folder / "model.onnx").exists()
    assert result["n_train"] + result["n_val"] == 100 and result["n_val"] == 19  # audio: 500 / 2700


def test_bad_input_is_one_line_error_and_starts_no_run(tracking_store, capsys):
    assert main(["reset_sweep", *TINY, "--beta", "1.5"]) == 2
    assert "beta" in capsys.readouterr().err
    assert mlflow.MlflowClient().get_experiment_by_name("reset_sweep") is None
