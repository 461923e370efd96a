"""``snnbench convert`` end to end on a small subset, and its one-line errors."""

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import require_data
from snnbench.cli import main

SMALL = ["--epochs", "1", "--train-limit", "1000", "--test-limit", "60", "--steps", "10",
         "--steps-list", "2,5,10,20", "--minibatch", "30"]


def _only_run():
    runs = mlflow.search_runs(experiment_names=["convert"], output_format="list")
    assert len(runs) == 1
    return runs[0]


def _artifacts(run_id, path=""):
    client = MlflowClient()
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(run_id, item.path) if item.is_dir else [item.path]
    return found


def test_convert_end_to_end(tracking_store, tmp_path):
    require_data()
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"layers": [{"neuron": "lif", "rate_scale": 4.0}], "sim": {"readout": "mean"}}))
    assert main(["convert", *SMALL, "--params-json", str(params)]) == 0
    run = _only_run()
    metrics = run.data.metrics
    for key in ("dnn_accuracy", "snn_accuracy", "conversion_loss_pp", "dnn_throughput_ips", "snn_throughput_ips",
                "dnn_latency_ms", "snn_latency_ms", "snn_mean_firing_rate_hz", "snn_spikes_per_neuron_per_step",
                "snn_synaptic_acs_per_sample", "dnn_macs_per_sample", "rate_equivalence_max_abs_err"):
        assert key in metrics, key
    assert metrics["rate_equivalence_max_abs_err"] <= 1e-4
    assert metrics["conversion_loss_pp"] == pytest.approx(100 * (metrics["dnn_accuracy"] - metrics["snn_accuracy"]))
    assert metrics["dnn_macs_per_sample"] == 784 * 256 + 256 * 10
    curve = MlflowClient().get_metric_history(run.info.run_id, "accuracy_at_steps")
    assert sorted(m.step for m in curve) == [2, 5, 10, 20]
    assert [m.value for m in curve if m.step == 10] == [metrics["snn_accuracy"]]
    assert json.loads(run.data.params["layers"])[0]["rate_scale"] == 4.0  # from --params-json
    artifacts = _artifacts(run.info.run_id)
    for name in ("snn/weights.npz", "snn/spec.json", "snn/params.json", "plots/accuracy_vs_steps.png",
                 "plots/confusion_dnn.png", "plots/confusion_snn.png", "confusion_matrices.json"):
        assert name in artifacts, name
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert models and models[0].source_run_id == run.info.run_id


def _one_line_failure(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("snnbench convert: error:")]
    assert len(errors) == 1 and "Traceback" not in err
    for word in words:
        assert word in errors[0]
    assert not mlflow.search_experiments(filter_string="name = 'convert'")  # nothing was logged
    capsys.readouterr()  # drop the store's own log lines


def test_bad_inputs_fail_in_one_line(tracking_store, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08garbage" * 20)
    _one_line_failure(capsys, ["convert", "--onnx-model", str(corrupt)], "not a valid ONNX model")
    _one_line_failure(capsys, ["convert", "--onnx-model", str(tmp_path / "missing.onnx")], "not found")
    bad_params = tmp_path / "bad.json"
    bad_params.write_text(json.dumps({"layers": [{"gian": 1}]}))
    _one_line_failure(capsys, ["convert", "--params-json", str(bad_params)], "gian")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _one_line_failure(capsys, ["convert", "--study-name", "nope", "--storage", storage], "no study 'nope'")
    _one_line_failure(capsys, ["convert", "--study-name", "x", "--params-json", str(bad_params)], "not both")


def test_unsupported_op_fails_in_one_line(tracking_store, tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper, save
    import numpy as np

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Sigmoid", ["h"], ["y"], name="sig")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(np.zeros((10, 784), np.float32), "w")])
    path = tmp_path / "sigmoid.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    _one_line_failure(capsys, ["convert", "--onnx-model", str(path)], "Sigmoid", "sig")


def test_convert_given_onnx_model(tracking_store, tmp_path):
    """--onnx-model skips training: any supported classifier over 784 pixels converts."""
    require_data()
    import torch
    from snnbench.onnx_export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    path = export_onnx(model, 784, tmp_path / "given.onnx")
    argv = ["convert", "--onnx-model", str(path), "--test-limit", "30", "--steps", "5", "--steps-list", "5",
            "--minibatch", "30", "--neuron", "if", "--rate-scale", "50"]
    assert main(argv) == 0
    metrics = _only_run().data.metrics
    assert metrics["dnn_macs_per_sample"] == 784 * 32 + 32 * 10
    assert metrics["rate_equivalence_max_abs_err"] <= 1e-4
    assert "train_seconds" not in metrics
