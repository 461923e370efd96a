"""ONNX -> layer extraction (onnx_ops): supported ops, BatchNorm folding, errors; the converted files' NPZ + JSON round trip."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from snnbench.conversion import converted_files, graph, onnx_ops
from snnbench.errors import DataError, UnsupportedModelError
from snnbench.models.export import export_onnx

RNG = np.random.default_rng(0)


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _save_graph(path, nodes, initializers, in_shape, out_size):
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_size])],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ort(path, x):
    return ort.InferenceSession(str(path)).run(None, {"x": x})[0]


def test_gemm_export_weights_match_torch(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    path = export_onnx(model, 12, tmp_path / "m.onnx")
    converted = onnx_ops.extract(path)
    assert [s.activation for s in converted.stages] == [True, False]
    for stage, layer in zip(converted.stages, (model[0], model[2])):
        (op,) = stage.ops
        np.testing.assert_array_equal(op.weight, layer.weight.detach().numpy())
        np.testing.assert_array_equal(op.bias, layer.bias.detach().numpy())
    assert converted.macs() == 12 * 7 + 7 * 3


def test_matmul_add_graph(tmp_path):
    w1, b1, w2, b2 = _f32(6, 5), _f32(5), _f32(5, 4), _f32(4)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["b1", "h1"], ["h2"]),
             helper.make_node("Relu", ["h2"], ["h3"]), helper.make_node("Dropout", ["h3"], ["h4"]),
             helper.make_node("MatMul", ["h4", "w2"], ["h5"]), helper.make_node("Add", ["h5", "b2"], ["y"])]
    path = _save_graph(tmp_path / "mm.onnx", nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, [6], 4)
    converted = onnx_ops.extract(path)
    np.testing.assert_array_equal(converted.stages[0].ops[0].weight, w1.T)
    np.testing.assert_array_equal(converted.stages[0].ops[0].bias, b1)
    np.testing.assert_array_equal(converted.stages[1].ops[0].weight, w2.T)
    x = _f32(9, 6)
    np.testing.assert_allclose(converted.forward(x), _ort(path, x), atol=1e-5)


def test_gemm_attributes_and_batchnorm_folding(tmp_path):
    w, c, w2 = _f32(6, 5), _f32(5), _f32(3, 5)  # first Gemm: transB=0, alpha, beta
    gamma, beta, mean, var = _f32(5), _f32(5), _f32(5), RNG.uniform(0.5, 2, 5).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["h1"], alpha=0.5, beta=2.0),
             helper.make_node("BatchNormalization", ["h1", "g", "be", "m", "v"], ["h2"], epsilon=1e-3),
             helper.make_node("Relu", ["h2"], ["h3"]),
             helper.make_node("Gemm", ["h3", "w2"], ["y"], transB=1)]
    inits = {"w": w, "c": c, "g": gamma, "be": beta, "m": mean, "v": var, "w2": w2}
    path = _save_graph(tmp_path / "bn.onnx", nodes, inits, [6], 3)
    converted = onnx_ops.extract(path)
    assert len(converted.stages) == 2 and len(converted.stages[0].ops) == 1  # BN folded away
    x = _f32(11, 6)
    np.testing.assert_allclose(converted.forward(x), _ort(path, x), atol=1e-4)


def test_conv_batchnorm_pooling_graph(tmp_path):
    """Reshape -> Conv(same) -> BN -> Relu -> AveragePool -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    k1, k2, w = _f32(4, 1, 3, 3), _f32(5, 4, 3, 3), _f32(3, 5)
    gamma, beta, mean = _f32(4), _f32(4), _f32(4)
    var = RNG.uniform(0.5, 2, 4).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Conv", ["r", "k1", "kb1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["a1"]),
             helper.make_node("AveragePool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "k2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["a2"]),
             helper.make_node("GlobalAveragePool", ["a2"], ["p2"]),
             helper.make_node("Flatten", ["p2"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    inits = {"shape": np.array([-1, 1, 10, 10], np.int64), "k1": k1, "kb1": _f32(4), "g": gamma, "be": beta,
             "m": mean, "v": var, "k2": k2, "w": w, "b": _f32(3)}
    path = _save_graph(tmp_path / "cnn.onnx", nodes, inits, [100], 3)
    converted = onnx_ops.extract(path)
    kinds = [[op.kind for op in s.ops] for s in converted.stages]
    assert kinds == [["conv"], ["avgpool", "conv"], ["avgpool", "dense"]]
    assert converted.stages[0].ops[0].padding == "same"
    x = RNG.uniform(0, 1, (7, 100)).astype(np.float32)
    np.testing.assert_allclose(converted.forward(x), _ort(path, x), atol=1e-4)
    # pooling counts no MACs; convs count output elements x kernel volume
    assert converted.macs() == 4 * 10 * 10 * 9 + 5 * 3 * 3 * 4 * 9 + 5 * 3


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    converted = onnx_ops.extract(export_onnx(model, 8, tmp_path / "m.onnx"))
    converted_files.save(converted, tmp_path / "snn")
    assert (tmp_path / "snn" / converted_files.WEIGHTS_FILE).is_file() and (tmp_path / "snn" / converted_files.SPEC_FILE).is_file()
    loaded = converted_files.load_any(tmp_path / "snn")
    x = _f32(5, 8)
    np.testing.assert_array_equal(loaded.forward(x), converted.forward(x))
    (tmp_path / "m.onnx").rename(tmp_path / "model.onnx")  # a folder with model.onnx also loads
    np.testing.assert_array_equal(converted_files.load_any(tmp_path).forward(x), converted.forward(x))


def test_fan_out_counts_nonzero_synapses():
    w = np.array([[1, 0, 2], [0, 0, 3]], np.float32)  # (out, in)
    op = graph.LinearOp("dense", (3,), (2,), w, np.zeros(2, np.float32))
    stage = graph.Stage([graph.LinearPath(graph.INPUT, [op])], np.zeros(2), activation=False, shape=(2,))
    np.testing.assert_array_equal(graph.fan_out(stage), [1, 0, 2])


def _one_line_error(path, *words, kind=UnsupportedModelError):
    with pytest.raises(kind) as info:
        onnx_ops.extract(path)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


def test_unsupported_op_names_op_and_node(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
             helper.make_node("Softmax", ["h"], ["y"], name="final_softmax")]
    path = _save_graph(tmp_path / "softmax.onnx", nodes, {"w": _f32(3, 4)}, [4], 3)
    _one_line_error(path, "Softmax", "final_softmax")


def test_an_op_without_handler_names_the_supported_ops(tmp_path):
    from snnbench.conversion.onnx_ops import HANDLERS

    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Sin", ["h"], ["y"], name="wave")]
    path = _save_graph(tmp_path / "sin.onnx", nodes, {"w": _f32(3, 4)}, [4], 3)
    assert _one_line_error(path, "Sin", "wave").endswith("supported ops: " + ", ".join(HANDLERS))


def test_add_of_two_tensors_sums_their_paths(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
             helper.make_node("Add", ["h", "h"], ["y"], name="residual")]
    path = _save_graph(tmp_path / "res.onnx", nodes, {"w": _f32(4, 4), "b": _f32(4)}, [4], 4)
    converted = onnx_ops.extract(path)
    (logits,) = converted.stages
    assert len(logits.paths) == 2 and logits.paths[0].ops[0] is logits.paths[1].ops[0]
    assert converted.macs() == 16  # the shared Gemm counts once
    x = _f32(5, 4)
    np.testing.assert_allclose(converted.forward(x), _ort(path, x), atol=1e-5)


def test_broadcasting_add_of_two_tensors_is_rejected(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
             helper.make_node("Gemm", ["x", "w1"], ["h1"], transB=1),
             helper.make_node("Add", ["h", "h1"], ["y"], name="broadcast_add")]
    path = _save_graph(tmp_path / "bc.onnx", nodes, {"w": _f32(4, 4), "w1": _f32(1, 4)}, [4], 4)
    _one_line_error(path, "Add", "broadcast_add", "(1, 4) and (1, 1)")


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\x01\x02" * 10)
    _one_line_error(bad, "is not an ONNX file", kind=DataError)
    _one_line_error(tmp_path / "missing.onnx", "not found", kind=DataError)


@pytest.mark.parametrize("conv_attrs", [
    {"pads": [0, 1, 2, 0], "strides": [2, 1]},             # asymmetric pads, stride 2 along H only
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},         # TensorFlow's "same": the odd pixel after
    {"auto_pad": "SAME_LOWER", "strides": [2, 2]},         # the odd pixel before
    {"pads": [1, 1, 1, 1], "strides": [2, 2], "dilations": [2, 1]},
])
def test_conv_padding_and_pad_nodes_match_onnx_runtime(tmp_path, conv_attrs):
    """Conv with any zero padding (asymmetric, auto_pad, dilated) and a Pad node before a Conv:
    the extraction equals ONNX Runtime, and the Nengo rate network too (in test_graph_conversion)."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Pad", ["r", "pads"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "k1"], ["c1"], **conv_attrs),
             helper.make_node("Relu", ["c1"], ["a1"]),
             helper.make_node("GlobalAveragePool", ["a1"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    inits = {"shape": np.array([-1, 2, 8, 8], np.int64), "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64),
             "k1": _f32(4, 2, 3, 3), "w": _f32(3, 4), "b": _f32(3)}
    path = _save_graph(tmp_path / "padded.onnx", nodes, inits, [128], 3)
    converted = onnx_ops.extract(path)
    assert [op.kind for op in converted.stages[0].ops] == ["pad", "conv"]
    x = RNG.uniform(0, 1, (5, 128)).astype(np.float32)
    np.testing.assert_allclose(converted.forward(x), _ort(path, x), atol=1e-4)
    folder = converted_files.save(converted, tmp_path / "spec")  # the spec files keep pads and dilations
    np.testing.assert_allclose(converted_files.load(folder).forward(x), _ort(path, x), atol=1e-4)


def test_used_pads_drop_what_no_window_reaches(tmp_path):
    """PyTorch's stride-2 padding 1 on an even size pads the top and left only in effect."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Conv", ["r", "k1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["c1"], ["y"])]
    inits = {"shape": np.array([-1, 1, 8, 8], np.int64), "k1": _f32(2, 1, 3, 3)}
    converted = onnx_ops.extract(_save_graph(tmp_path / "s2.onnx", nodes, inits, [64], 32))
    op = converted.stages[0].paths[0].ops[0]
    assert op.pads == (1, 1, 0, 0) and op.padding == "explicit" and op.out_shape == (2, 4, 4)


@pytest.mark.parametrize("low, high, words", [(-1.0, 6.0, ["Clip", "lower bound 0", "-1.0"])])
def test_clip_that_is_no_bounded_relu_is_refused(tmp_path, low, high, words):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
             helper.make_node("Clip", ["h", "lo", "hi"], ["a"]),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=1)]
    inits = {"w": _f32(4, 6), "b": _f32(4), "lo": np.array(low, np.float32), "hi": np.array(high, np.float32),
             "w2": _f32(3, 4), "b2": _f32(3)}
    path = _save_graph(tmp_path / "clip.onnx", nodes, inits, [6], 3)
    _one_line_error(path, *words)
