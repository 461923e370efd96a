"""The ONNX zoo (tests/onnx_zoo.py): MNIST classifiers exported the way people export them, each through
``snnbench convert`` as a user runs it, one through ``noise_sweep``; the ones that cannot convert refused in one line."""

import mlflow
import onnx
import pytest
from mlflow.tracking import MlflowClient

from conftest import built_once, require_data
from onnx_zoo import ZOO, build_zoo, ort_predictions, zoo_in
from snnbench.cli.main import main
from snnbench.data import load_mnist

CONVERTIBLE = [entry.name for entry in ZOO if entry.converts]
REFUSED = [entry.name for entry in ZOO if not entry.converts]
CONVERT_IMAGES = 300
# calibration and validation images of each conversion: a user's default is 1,000; the error correction's simulation
# scales with them, and 250 give the same accuracies here (chainer_cnn_asymmetric_pool: DNN 98.33 %, SNN 98.00 % at
# 32 steps with either)
CALIBRATION_IMAGES = 250


@pytest.fixture(scope="session")
def zoo_model(tmp_path_factory):
    """``zoo_model(name)``: that zoo entry, its model trained and exported once per test run. A folder per
    group of entries (GROUPS), so that pytest-xdist workers build different ones at the same time and a
    test waits only for the model it reads."""
    require_data()
    group = {entry.name: entry.group for entry in ZOO}

    def built(name: str):
        folder = built_once(tmp_path_factory, f"onnx-zoo-{group[name]}", lambda into: build_zoo(into, (group[name],)))
        return next(entry for entry in zoo_in(folder, (group[name],)) if entry.name == name)
    return built


@pytest.fixture(scope="session")
def zoo(zoo_model) -> dict:
    """The whole zoo by name."""
    return {entry.name: zoo_model(entry.name) for entry in ZOO}


@pytest.fixture(scope="session")
def test_images():
    test = load_mnist("test")
    return test.images, test.labels


def _ort_accuracy(entry, test_images, n: int) -> float:
    images, labels = test_images
    return float((ort_predictions(entry, images[:n]) == labels[:n]).mean())


def _ops(path) -> list:
    return list(onnx.load(str(path)).graph.node)


def _attribute(node, name):
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def _in_order(nodes, *ops) -> bool:
    """``ops`` occur among the nodes' op types in this order (others may lie between)."""
    remaining = iter(node.op_type for node in nodes)
    return all(op in remaining for op in ops)


def _topologically_sorted(graph) -> bool:
    known = {value.name for value in (*graph.input, *graph.initializer)}
    for node in graph.node:
        if not all(name in known for name in node.input if name):
            return False
        known.update(node.output)
    return True


def test_every_convertible_zoo_model_scores_in_onnx_runtime(zoo, test_images):
    """The zoo itself: under its own preprocessing each model scores >= 94% on 500 test images in ONNX Runtime."""
    scores = {name: _ort_accuracy(zoo[name], test_images, 500) for name in CONVERTIBLE}
    assert min(scores.values()) >= 0.94, scores


def test_the_zoo_files_hold_the_patterns_they_claim(zoo):
    """What each exporter wrote, so that a newer exporter that stops writing a pattern fails here, not silently."""
    for entry in zoo.values():
        model = onnx.load(str(entry.path))
        assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == entry.opset, entry.name
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        if entry.batch != "none":
            assert isinstance(dims[0], str) if entry.batch == "dynamic" else dims[0] == 1, (entry.name, dims)
            dims = dims[1:]
        assert dims == list(entry.input_shape), (entry.name, dims)
        assert _topologically_sorted(model.graph) == (entry.name != "keras2onnx_cnn_unsorted"), entry.name
    assert {entry.opset for entry in zoo.values()} >= set(range(9, 18))
    nodes = {name: _ops(entry.path) for name, entry in zoo.items()}

    assert _in_order(nodes["torch_example_cnn"], "Conv", "MaxPool", "Relu", "Shape", "Gather", "Unsqueeze", "Concat",
                     "Reshape", "Gemm", "LogSoftmax")
    model = onnx.load(str(zoo["torch_mlp_two_outputs"].path))
    assert [o.name for o in model.graph.output] == ["probabilities", "hidden"]
    assert _in_order(model.graph.node, "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Softmax")
    assert [n.op_type for n in nodes["torch_mlp_bn_sigmoid_batch1_raw"]] == ["Gemm", "BatchNormalization", "Relu",
                                                                              "Gemm", "Sigmoid"]
    padded = [n for n in nodes["torch_cnn_nhw_padded_pool"] if n.op_type == "MaxPool"][0]
    assert nodes["torch_cnn_nhw_padded_pool"][0].op_type == "Unsqueeze" and _attribute(padded, "pads") == [1] * 4
    assert [_attribute(n, "ceil_mode") for n in nodes["torch_bn_cnn_grey_as_rgb"] if n.op_type == "MaxPool"] == [1, 1]
    unbatched = nodes["torch_unbatched_cnn_softmax_dim0"]
    assert _in_order(unbatched, "Unsqueeze", "Conv", "Squeeze", "Unsqueeze", "MaxPool", "Squeeze", "Softmax")
    assert _attribute(unbatched[-1], "axis") == 0
    assert nodes["torch_bn_cnn_sigmoid_input"][0].op_type == "Sigmoid"
    assert [n.op_type for n in nodes["torch_cnn_subdiv_two_linear"] if n.op_type != "Constant"][:3] == ["Sub", "Div",
                                                                                                         "Conv"]
    assert [n.op_type for n in nodes["torch_cnn_subdiv_two_linear"][-2:]] == ["Gemm", "Gemm"]
    transposed = onnx.load(str(zoo["torch_mlp_runtime_transpose"].path)).graph
    assert {i.name for i in transposed.initializer} <= {i.name for i in transposed.input}
    assert _in_order(transposed.node, "Transpose", "MatMul", "Add", "Relu", "Transpose", "MatMul")
    for name in ("keras_cnn_nhwc", "keras_mlp_hw", "keras_rescaling_raw"):
        assert nodes[name][-1].op_type == "Softmax"
    assert nodes["keras_rescaling_raw"][0].op_type == "Mul"

    dynamo = nodes["dynamo_example_cnn"]
    shape = next(n for n in dynamo if n.op_type == "Shape")
    assert (_attribute(shape, "start"), _attribute(shape, "end")) == (0, 1)
    assert _attribute(next(n for n in dynamo if n.op_type == "Reshape"), "allowzero") == 1
    constants = {a.name for n in dynamo if n.op_type == "Constant" for a in n.attribute}
    assert constants == {"value_ints", "value_float"}
    pools = [n for n in nodes["chainer_cnn_asymmetric_pool"] if n.op_type == "MaxPool"]
    assert [_attribute(n, "pads") for n in pools] == [[0, 0, 1, 1]] * 2
    for entry in zoo.values():
        if not entry.converts:
            assert any(n.op_type == entry.refusal_op for n in nodes[entry.name]), entry.name


def _only_run():
    runs = mlflow.search_runs(experiment_names=["convert"], output_format="list")
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_a_zoo_model_converts_as_a_user_runs_it(name, zoo_model, test_images, tracking_store):
    """``snnbench convert --onnx-model F`` with the model's preprocessing: the DNN scores what ONNX Runtime gives
    under that preprocessing, the SNN within 3 points of it at 32 steps, and the rate-mode network equals ORT."""
    entry = zoo_model(name)
    assert main(["convert", "--onnx-model", str(entry.path), *entry.cli_options(),
                 "--test-limit", str(CONVERT_IMAGES), "--steps-list", "32", "--steps", "32",
                 "--calibration-samples", str(CALIBRATION_IMAGES)]) == 0
    metrics = _only_run().data.metrics
    assert abs(metrics["dnn_accuracy"] - _ort_accuracy(entry, test_images, CONVERT_IMAGES)) <= 1 / CONVERT_IMAGES
    assert metrics["snn_accuracy"] >= metrics["dnn_accuracy"] - 0.03, metrics
    assert metrics["rate_equivalence_max_abs_err"] <= 1e-4


@pytest.mark.parametrize("name", REFUSED)
def test_a_zoo_model_that_cannot_convert_is_refused_in_one_line(name, zoo_model, tracking_store, capsys):
    """One line naming the op and its node, exit code 2, and no run left behind."""
    entry = zoo_model(name)
    node = next(n for n in _ops(entry.path) if n.op_type == entry.refusal_op)
    assert main(["convert", "--onnx-model", str(entry.path), *entry.cli_options(),
                 "--test-limit", str(CONVERT_IMAGES), "--steps-list", "32", "--steps", "32"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("snnbench convert: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert entry.refusal_op in errors[0] and (node.name or node.output[0]) in errors[0], errors[0]
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")


@pytest.mark.slow
def test_a_zoo_cnn_is_swept_in_ort_and_nengo_under_its_preprocessing(zoo_model, tracking_store):
    """noise_sweep --onnx-model on the grey-as-RGB BN CNN with per-channel normalisation: clean, ONNX Runtime
    scores as the model does and the converted SNN within 3 points of it."""
    entry = zoo_model("torch_bn_cnn_grey_as_rgb")
    assert main(["noise_sweep", "--onnx-model", str(entry.path), "--dataset", "mnist", *entry.cli_options(),
                 "--stds", "0,0.5", "--positions", "input", "--test-limit", "200", "--steps", "32"]) == 0
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("noise_sweep")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    accuracy = {(c.data.params["family"], c.data.params["position"]): c.data.metrics["accuracy"] for c in children}
    assert set(accuracy) == {(f, p) for f in ("ort-dnn", "nengo-snn") for p in ("none", "input")}
    assert accuracy[("ort-dnn", "none")] >= 0.9  # under the wrong preprocessing it scores far less
    assert abs(accuracy[("nengo-snn", "none")] - accuracy[("ort-dnn", "none")]) <= 0.03
