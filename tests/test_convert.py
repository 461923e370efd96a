"""``snnbench convert`` end to end on a small subset, and its one-line errors."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import require_data
from snnbench.cli.main import main
from snnbench.errors import SnnbenchError

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


def _table(run_id) -> list:
    path = MlflowClient().download_artifacts(run_id, "results.json")
    table = json.loads(Path(path).read_text())
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def test_convert_end_to_end(tracking_store, tmp_path):
    """The calibrated method: rate scales from training images, logged and saved."""
    require_data()
    assert main(["convert", *SMALL, "--calibration-samples", "300", "--method", "calibrated"]) == 0
    run = _only_run()
    metrics, params = run.data.metrics, run.data.params
    for key in ("dnn_accuracy", "snn_accuracy", "snn_accuracy_ci_low", "snn_accuracy_ci_high", "conversion_loss_pp",
                "dnn_throughput_ips", "snn_throughput_ips", "dnn_latency_ms", "snn_latency_ms",
                "snn_mean_firing_rate_hz", "snn_spikes_per_neuron_per_step", "snn_multi_spike_neuron_share",
                "snn_active_per_sample", "snn_synaptic_acs_per_sample", "dnn_macs_per_sample",
                "rate_equivalence_max_abs_err"):
        assert key in metrics, key
    assert metrics["rate_equivalence_max_abs_err"] <= 1e-4
    assert metrics["conversion_loss_pp"] == pytest.approx(100 * (metrics["dnn_accuracy"] - metrics["snn_accuracy"]))
    assert metrics["dnn_macs_per_sample"] == 784 * 256 + 256 * 10
    assert metrics["snn_accuracy_ci_low"] < metrics["snn_accuracy"] < metrics["snn_accuracy_ci_high"]
    curve = MlflowClient().get_metric_history(run.info.run_id, "accuracy_at_steps")
    assert sorted(m.step for m in curve) == [2, 5, 10, 20]
    assert [m.value for m in curve if m.step == 10] == [metrics["snn_accuracy"]]
    assert params["method"] == "calibrated" and params["calibration_samples"] == "300"
    assert params["method_reason"] == "--method calibrated given" == run.data.tags["snnbench.method_reason"]
    assert "study_name" not in params and "params_json" not in params  # the tuned method's options
    artifacts = _artifacts(run.info.run_id)
    for name in ("snn/weights.npz", "snn/spec.json", "snn/params.json", "plots/accuracy_vs_steps.png",
                 "plots/confusion_dnn.png", "plots/confusion_snn.png", "confusion_matrices.json", "results.json"):
        assert name in artifacts, name
    document = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, "snn/params.json")).read_text())
    scale = document["source"]["activation_scales"][0]
    assert document["source"]["method"] == "calibrated" and document["source"]["percentile"] == 99.9
    assert document["layers"][0]["rate_scale"] == pytest.approx(1.0 / (scale * 0.001))  # target 1 spike / step
    assert json.loads(params["layers"])[0]["neuron"] == "if"
    rows = _table(run.info.run_id)
    snn = {r["steps"]: r for r in rows if r["engine"] == "nengo-snn"}
    assert [r["engine"] for r in rows].count("ort-dnn") == 1 and sorted(snn) == [2, 5, 10, 20]
    assert {r["method"] for r in rows} == {"calibrated"}
    assert snn[10]["accuracy"] == pytest.approx(metrics["snn_accuracy"]) and snn[10]["spikes_per_neuron_per_step"] > 0
    assert snn[5]["spikes_per_neuron_per_step"] is None or np.isnan(snn[5]["spikes_per_neuron_per_step"])
    dnn = next(r for r in rows if r["engine"] == "ort-dnn")
    for r in snn.values():  # paired on the same images: the paired loss is the accuracy gap itself
        assert r["paired_loss"] == pytest.approx(dnn["accuracy"] - r["accuracy"])
        assert r["paired_loss_ci_low"] <= r["paired_loss"] <= r["paired_loss_ci_high"]
    assert metrics["conversion_loss_pp_ci_low"] == pytest.approx(100 * snn[10]["paired_loss_ci_low"])
    paired = MlflowClient().get_metric_history(run.info.run_id, "paired_loss_at_steps")
    assert sorted(m.step for m in paired) == [2, 5, 10, 20]


def test_paired_losses_pair_each_step_count_with_the_dnn_on_the_same_images():
    from snnbench.benchmarks.convert_eval import paired_losses
    from snnbench.evaluation import harness
    from snnbench.evaluation.metrics import Accuracy

    y = np.arange(200) % 10
    right, wrong = np.eye(10)[y], np.eye(10)[(y + 1) % 10]
    dnn = right.copy()
    dnn[:20] = wrong[:20]                              # the DNN misses images 0-19
    snn = {4: right.copy(), 8: right.copy()}
    snn[4][10:50] = wrong[10:50]                       # 4 steps: misses 10-49 (30 more, 10 shared)

    def scored(logits, steps):
        return harness.score(harness.Model(), logits, y, None, harness.CLEAN, (Accuracy(),), steps=steps)

    rows = paired_losses([scored(snn[4], 4), scored(snn[8], 8)], scored(dnn, 1))
    assert [r["accuracy"] for r in rows] == [0.8, 1.0]
    assert rows[0]["paired_loss"] == pytest.approx(0.9 - 0.8) and rows[1]["paired_loss"] == pytest.approx(-0.1)
    assert rows[0]["paired_loss_ci_low"] > 0 and rows[1]["paired_loss_ci_high"] < 0
    assert rows[0]["paired_loss_ci_high"] - rows[0]["paired_loss_ci_low"] < 0.2  # paired: no sampling of the DNN


def test_convert_default_corrects_each_step_count_with_its_own_correction(tracking_store, capsys):
    """No method named (auto): corrected, as the run says and logs; per-channel calibrated, then corrected on
    training images for each step count at the rates validation chose; the corrections, their per-layer
    errors and the settings tried are logged."""
    require_data()
    argv = ["convert", *SMALL, "--steps", "5", "--steps-list", "2,5", "--calibration-samples", "200"]
    assert main(argv) == 0
    assert "Conversion method: corrected (auto: error correction applies" in capsys.readouterr().out
    run = _only_run()
    assert run.data.params["method"] == "corrected" and run.data.params["scales"] == "channel"
    assert run.data.params["rates"] == "validated" and run.data.params["method_reason"].startswith("auto: ")
    assert run.data.tags["snnbench.method"] == "corrected"
    corrected = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id,
                                                                  "snn/corrected_layers.json")).read_text())
    assert sorted(corrected) == ["2", "5"]
    for entry in corrected.values():
        layer, errors = entry["layers"][0], entry["errors"][0]
        assert len(layer["channel_bias"]) == len(layer["channel_voltage"]) == len(layer["channel_scales"]) == 256
        assert errors["error_after"] < errors["error_before"]
    assert corrected["2"]["layers"][0]["channel_bias"] != corrected["5"]["layers"][0]["channel_bias"]
    for entry in corrected.values():  # one hidden layer: balanced rates are uniform ones, so uniform is kept
        tried = {(t["rates"], t["rate_factor"]): t["validation_accuracy"] for t in entry["tried"]}
        assert entry["rates"] == "uniform" and tried[("uniform", entry["rate_factor"])] == entry["validation_accuracy"]
        assert all(tried[("balanced", f)] == tried[("uniform", f)] for r, f in tried if r == "balanced")
    assert set(json.loads(run.data.params["rates_at_steps"]).values()) == {"uniform"}
    factors = json.loads(run.data.params["rate_factor_at_steps"])
    assert factors == {s: corrected[s]["rate_factor"] for s in ("2", "5")}
    document = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, "snn/params.json")).read_text())
    assert document["source"]["method"] == "corrected" and document["layers"] == corrected["5"]["layers"]
    assert document["source"]["rate_factor"] == corrected["5"]["rate_factor"]
    assert "256 values" in json.loads(run.data.params["layers"])[0]["channel_bias"]  # the param stays short
    snn = {r["steps"]: r for r in _table(run.info.run_id) if r["engine"] == "nengo-snn"}
    assert set(snn) == {2, 5}
    assert all(r["spikes_per_neuron_per_step"] > 0 for r in snn.values())  # every step count: its own activity


def _args(*argv):
    from snnbench.cli.main import build_parser

    parser = build_parser("convert")
    return parser.settings(parser.parse_args(list(argv)))


def test_methods_resolve_to_their_settings(tmp_path):
    from snnbench.benchmarks.convert import resolve

    reference = resolve(_args("--method", "reference"))
    layer = reference.layers[0]
    assert (layer.neuron, layer.gain, layer.bias_scale, layer.rate_scale, layer.initial_voltage) == \
        ("lif", 1.0, 1.0, 1.0, "uniform")
    calibrated = resolve(_args("--percentile", "max", "--target-rate", "0.5", "--neuron", "lif"))
    assert calibrated.layers is None and calibrated.calibration.percentile == 100.0
    assert (calibrated.calibration.target_rate, calibrated.calibration.neuron) == (0.5, "lif")
    assert (calibrated.calibration.scales, calibrated.calibration.rates) == ("layer", "uniform")
    assert (calibrated.method, calibrated.method_reason.split(";")[0]) == \
        ("calibrated", "auto: error correction simulates IF neurons without an output synapse for the mean readout")
    corrected = resolve(_args("--method", "corrected", "--neuron", "if")).calibration
    assert (corrected.scales, corrected.rates) == ("channel", "validated")  # the corrected method's defaults
    assert resolve(_args("--method", "corrected", "--rates", "uniform")).calibration.rates == "uniform"
    with pytest.raises(SnnbenchError, match="--rates validated is chosen per step count by --method corrected"):
        resolve(_args("--method", "calibrated", "--rates", "validated"))
    with pytest.raises(SnnbenchError, match="--readout mean"):
        resolve(_args("--method", "corrected", "--readout", "last"))
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"layers": [{"neuron": "if", "rate_scale": 40.0}], "sim": {"steps": 6}}))
    tuned = resolve(_args("--method", "tuned", "--params-json", str(params)))
    assert tuned.layers[0].rate_scale == 40.0 and tuned.sim.steps == 6
    assert tuned.source == {"method": "tuned", "from": str(params)}
    assert resolve(_args("--params-json", str(params))).method == "tuned"  # auto: the setting given


def test_auto_method_corrects_where_correction_applies_and_says_why():
    """No method named: corrected (IF neurons, no output synapse, the mean readout, an SNN only nengo-dl runs),
    else calibrated, each with its reason; a method named is that method."""
    from snnbench.benchmarks.convert import resolve

    auto = resolve(_args())
    assert (auto.method, auto.calibration.scales, auto.calibration.rates) == ("corrected", "channel",
                                                                                       "validated")
    assert auto.method_reason.startswith("auto: error correction applies")
    for options, why in ((["--neuron", "lif"], "--neuron lif"), (["--neuron", "if-rectified", "--synapse", "0.005"],
                                                                 "--synapse 0.005"),
                         (["--readout", "last"], "--readout last"), (["--nir-out", "snn.nir"], "--nir-out"),
                         (["--target", "nengo-loihi"], "nengo-loihi")):
        settings = resolve(_args(*options))
        assert settings.method == "calibrated" and why in settings.method_reason, options
        assert (settings.calibration.scales, settings.calibration.rates) == ("layer", "uniform")
    assert resolve(_args("--neuron", "if-rectified")).method == "corrected"
    named = resolve(_args("--method", "calibrated"))
    assert (named.method, named.method_reason) == ("calibrated", "--method calibrated given")


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
    _one_line_failure(capsys, ["convert", "--onnx-model", str(corrupt)], "is not an ONNX file")
    _one_line_failure(capsys, ["convert", "--onnx-model", str(tmp_path / "missing.onnx")], "not found")
    bad_params = tmp_path / "bad.json"
    bad_params.write_text(json.dumps({"layers": [{"gian": 1}]}))
    _one_line_failure(capsys, ["convert", "--method", "tuned", "--params-json", str(bad_params)], "gian")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _one_line_failure(capsys, ["convert", "--method", "tuned", "--study-name", "nope", "--storage", storage],
                      "no study 'nope'")
    _one_line_failure(capsys, ["convert", "--study-name", "x", "--params-json", str(bad_params)], "not both")
    _one_line_failure(capsys, ["convert", "--method", "tuned"], "--method tuned")
    _one_line_failure(capsys, ["convert", "--method", "calibrated", "--params-json", str(bad_params)],
                      "--method tuned")
    _one_line_failure(capsys, ["convert", "--params-json", str(bad_params)], "gian")  # auto: tuned, then read
    _one_line_failure(capsys, ["convert", "--percentile", "0"], "--percentile")
    _one_line_failure(capsys, ["convert", "--target-rate", "5"], "--target-rate")


def test_unsupported_op_fails_in_one_line(tracking_store, tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper, save
    import numpy as np

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Sigmoid", ["h"], ["s"], name="sig"),
         helper.make_node("Gemm", ["s", "w2"], ["y"], transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(np.zeros((16, 784), np.float32), "w"),
         numpy_helper.from_array(np.zeros((10, 16), np.float32), "w2")])
    path = tmp_path / "sigmoid.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    _one_line_failure(capsys, ["convert", "--onnx-model", str(path)], "Sigmoid", "sig", "hidden activation")
    head_only = tmp_path / "linear.onnx"  # a Sigmoid head (dropped) after one linear layer: no hidden layer
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Sigmoid", ["h"], ["y"], name="sig")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(np.zeros((10, 784), np.float32), "w")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(head_only))
    _one_line_failure(capsys, ["convert", "--onnx-model", str(head_only)], "no hidden ReLU layer")


def test_convert_given_onnx_model(tracking_store, tmp_path):
    """--onnx-model skips training: any supported classifier over 784 pixels converts."""
    require_data()
    import torch
    from snnbench.models.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    path = export_onnx(model, 784, tmp_path / "given.onnx")
    argv = ["convert", "--onnx-model", str(path), "--test-limit", "30", "--steps", "5", "--steps-list", "5",
            "--minibatch", "30", "--calibration-samples", "100"]
    assert main(argv) == 0
    metrics = _only_run().data.metrics
    assert metrics["dnn_macs_per_sample"] == 784 * 32 + 32 * 10
    assert metrics["rate_equivalence_max_abs_err"] <= 1e-4
    assert "train_seconds" not in metrics


def test_the_deep_cnn_examples_convert_exactly(tmp_path):
    """examples/deep_cnns.py's networks (batch norm with its own statistics, stride-2 padded convs, 1x1 shortcuts,
    depthwise convs), exported as the example exports them: the rate network reproduces ONNX Runtime, and the
    simulation error correction runs on reproduces the Nengo network's spiking logits."""
    import importlib.util

    import torch

    from snnbench import engines
    from snnbench.conversion import calibration as cal, onnx_ops
    from snnbench.conversion.correction import activations, simulate
    from snnbench.conversion.nengo_net import SimConfig
    from snnbench.engines.nengo import NengoRunner

    spec = importlib.util.spec_from_file_location("deep_cnns", Path(__file__).resolve().parents[1] / "examples" /
                                                  "deep_cnns.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x = np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32)
    for name in example.NETWORKS:
        torch.manual_seed(0)
        net = getattr(example, name)()
        net.train()
        with torch.no_grad():
            for _ in range(3):  # batch norm statistics of its own (not the identity)
                net(torch.from_numpy(x) * 2)
        path = example.export_onnx(net.eval(), tmp_path / f"{name}.onnx")
        model = onnx_ops.extract(path)
        flat = x.reshape(len(x), -1)
        reference = engines.build("ort-dnn", path, {"activity": False}).predict(flat)
        assert np.abs(model.forward(flat) - reference).max() <= 1e-4, name
        assert np.abs(activations(model, flat)[-1].numpy() - reference).max() <= 1e-3, name  # float32
        layers, _ = cal.calibrate(model, flat, cal.Calibration(samples=40, scales="channel"))
        with NengoRunner(model, layers, SimConfig(steps=3, minibatch=20), counters=False) as runner:
            spiking = runner.predict(flat[:20])
        torch_logits = simulate(model, layers, flat[:20], steps=3)[-1]
        assert np.abs(spiking - torch_logits).max() <= 1e-4 * max(1.0, np.abs(torch_logits).max()), name
