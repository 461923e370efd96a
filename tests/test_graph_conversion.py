"""Graphs beyond a layer chain: image-shaped inputs, MaxPool (exact and average routes), residual
Add, Concat and the ResNet-style CNN, each checked in rate mode against ONNX Runtime; activity
counts on the DAG; the spec files of a DAG; one-line errors. Random weights: no training."""

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from snnbench.conversion import converted_files, graph, onnx_ops
from snnbench.errors import SnnbenchError
from snnbench.models.conversion import SmallResNet
from snnbench.conversion.nengo_net import LayerParams, SimConfig
from snnbench.models.export import export_onnx
from snnbench.engines.nengo import NengoRunner
from snnbench.engines.ort import OrtRunner

RATE_SCALE = 4.0  # relu-rate networks are exact for any rate scale; != 1 so that counts scale
N_SAMPLES = 10


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 12 * 12, 5)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        return self.fc(torch.relu(self.c2(a) + a).flatten(1))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(1, 3, 3), nn.Conv2d(1, 2, 3), nn.Conv2d(5, 4, 3)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        both = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(torch.relu(self.c(both)).flatten(1))


def _conv_bn(c_in, c_out, kernel, stride=1, padding=0, **kw):
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False, **kw), nn.BatchNorm2d(c_out)]


class DownsamplingBlock(nn.Module):
    """A ResNet basic block that halves the size: conv3 stride 2 pad 1 + BN + ReLU, conv3 pad 1 +
    BN, plus a 1x1 stride-2 shortcut convolution + BN, then ReLU."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU())
        self.body = nn.Sequential(*_conv_bn(4, 8, 3, 2, 1), nn.ReLU(), *_conv_bn(8, 8, 3, 1, 1))
        self.shortcut = nn.Sequential(*_conv_bn(4, 8, 1, 2))
        self.fc = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        x = self.stem(x)
        return self.fc(torch.relu(self.body(x) + self.shortcut(x)).flatten(1))


def _randomised_batchnorm(model: nn.Module) -> nn.Module:
    """Random BN statistics and affine parameters (the defaults fold to the identity)."""
    generator = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            m.bias.data.copy_(0.2 * torch.randn(n, generator=generator))
    return model


def _vgg():  # stride-2 padding-1 downsampling, BN, a bias-free conv
    return _randomised_batchnorm(nn.Sequential(
        nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), *_conv_bn(4, 8, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 5)))


def _depthwise_separable():  # MobileNet-style: ReLU6, depthwise stride 2, pointwise; grouped + dilated
    return _randomised_batchnorm(nn.Sequential(
        nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU6(),
        *_conv_bn(8, 8, 3, 2, 1, groups=8), nn.ReLU6(), *_conv_bn(8, 16, 1), nn.ReLU(),
        nn.Conv2d(16, 8, 3, 1, 2, dilation=2, groups=4), nn.Hardtanh(0.0, 2.0), nn.Flatten(),
        nn.Linear(8 * 6 * 6, 5)))


# name -> (module, per-sample input shape, ONNX ops the case must contain)
CASES = {
    "flat_mlp": (lambda: nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 5)), (20,), {"Gemm"}),
    "image_cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                                        nn.Linear(4 * 5 * 5, 5)), (1, 12, 12), {"Conv", "AveragePool"}),
    "maxpool_after_relu": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                 nn.Flatten(), nn.Linear(4 * 6 * 6, 5)), (1, 12, 12), {"MaxPool"}),
    # a 3x3 window (9 inputs: an odd one out at each level) on a conv's output, before its ReLU
    "maxpool_3x3_before_relu": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(3, 2), nn.ReLU(),
                                                      nn.Flatten(), nn.Linear(4 * 4 * 4, 5)), (1, 12, 12),
                                {"MaxPool"}),
    "residual_add": (Residual, (1, 12, 12), {"Add"}),
    "concat": (Concat, (1, 12, 12), {"Concat"}),
    "resnet": (SmallResNet, (1, 28, 28), {"MaxPool", "Add", "Concat", "GlobalAveragePool"}),
    "vgg_stride2_pad1": (_vgg, (1, 12, 12), {"Conv"}),
    "resnet_block_1x1_stride2_shortcut": (lambda: _randomised_batchnorm(DownsamplingBlock()), (1, 12, 12),
                                          {"Conv", "Add"}),
    "depthwise_separable_relu6": (_depthwise_separable, (1, 12, 12), {"Conv", "Clip"}),
}


def _export(name, tmp_path):
    build, shape, ops = CASES[name]
    torch.manual_seed(0)
    path = export_onnx(build(), shape, tmp_path / f"{name}.onnx")
    assert ops <= {n.op_type for n in onnx.load(str(path)).graph.node}  # the case holds what it tests
    x = np.random.default_rng(1).uniform(0, 1, (N_SAMPLES, int(np.prod(shape)))).astype(np.float32)
    return path, x


def _rate_network(converted, x):
    """Logits and activity of the relu-rate Nengo network (nengo_dl, 2 steps, last step)."""
    sim = SimConfig(steps=2, readout="last", minibatch=len(x))
    with NengoRunner(converted, LayerParams("relu-rate", rate_scale=RATE_SCALE), sim) as runner:
        return runner.predict(x), runner.last_stats, sim


@pytest.mark.parametrize("name", list(CASES))
def test_rate_mode_equals_onnx_runtime(name, tmp_path):
    """relu-rate Nengo network == ONNX Runtime (fed flat inputs in any declared layout) to 1e-4,
    and the activity counters follow the DNN's activations and the DAG's fan-outs."""
    path, x = _export(name, tmp_path)
    reference = OrtRunner(path).predict(x)
    assert reference.std() > 1e-3
    converted = onnx_ops.extract(path)
    assert converted.approximations == []
    assert np.abs(converted.forward(x) - reference).max() <= 1e-4
    logits, stats, sim = _rate_network(converted, x)
    assert np.abs(logits - reference).max() <= 1e-4
    # counts: expected spikes per step = activation x rate_scale x dt; accumulates weight them by fan-out
    hidden = converted.activations(x)[:-1]
    per_step = [h * RATE_SCALE * sim.dt for h in hidden]
    spikes = sim.steps * sum(s.sum() for s in per_step) / len(x)
    acs = sim.steps * sum((s @ converted.fan_out(i)).sum() for i, s in enumerate(per_step)) / len(x)
    assert stats["spikes_per_sample"] == pytest.approx(spikes, rel=1e-4)
    assert stats["synaptic_acs_per_sample"] == pytest.approx(acs, rel=1e-4)


def test_maxpool_exact_route_adds_a_tree_of_relu_populations(tmp_path):
    path, _ = _export("maxpool_after_relu", tmp_path)
    converted = onnx_ops.extract(path, maxpool="exact")
    names = [s.name for s in converted.hidden]
    assert len(names) == 1 + 3 and all("/max" in n for n in names[1:])  # 2x2 window: 3 pairwise maxes
    assert all(s.size_out == 4 * 6 * 6 for s in converted.hidden[1:])


@pytest.mark.parametrize("name", ["maxpool_after_relu", "maxpool_3x3_before_relu", "resnet"])
def test_routed_fan_out_counts_what_each_neuron_reaches(name, tmp_path):
    """A population fed by routing ops only (a max-pool tree's pads and selections): each neuron's fan-out is
    the number of the population's neurons that a one-hot input on it reaches through any of its paths."""
    from dataclasses import replace

    import torch

    from snnbench.conversion.graph import ROUTING_OPS, sum_paths

    converted = onnx_ops.extract(_export(name, tmp_path)[0], maxpool="exact")
    routed = 0
    for stage in converted.stages:
        for source in set(stage.sources):
            paths = [replace(p, scale=1.0) for p in stage.paths if p.source == source]
            if not all(op.kind in ROUTING_OPS for path in paths for op in path.ops):
                continue
            size = next((p.ops[0].size_in for p in paths if p.ops), stage.size_out)
            one_hot = torch.eye(size, dtype=torch.float64)
            reached = (sum_paths(paths, lambda _: one_hot) > 0).sum(dim=1).numpy()
            np.testing.assert_array_equal(graph.fan_out(stage, source=source), reached)
            routed += any(path.ops for path in paths)
    assert routed  # the tree's populations were among them


def test_maxpool_average_route_is_labelled_and_deviates(tmp_path):
    path, x = _export("maxpool_after_relu", tmp_path)
    reference = OrtRunner(path).predict(x)
    converted = onnx_ops.extract(path, maxpool="average")
    assert len(converted.hidden) == 1 and len(converted.approximations) == 1
    assert "MaxPool" in converted.approximations[0] and "average" in converted.approximations[0]
    logits, _, _ = _rate_network(converted, x)
    assert np.abs(logits - converted.forward(x)).max() <= 1e-4  # the network computes its approximation
    assert np.abs(logits - reference).max() > 1e-3               # which is not the ONNX model
    with pytest.raises(SnnbenchError, match="MaxPool route"):
        onnx_ops.extract(path, maxpool="max")


def test_fan_out_merges_the_paths_into_each_population():
    """input (3) -> relu(W1 x) (2) -> logits (2) = W2 h + h (identity skip) + W3 x."""
    w1 = np.array([[1, 0, 2], [0, 0, 3]], np.float32)
    w2 = np.array([[1, 0], [1, 0]], np.float32)
    w3 = np.array([[0, 1, 0], [0, 0, 0]], np.float32)

    def dense(w):
        return graph.LinearOp("dense", (w.shape[1],), (w.shape[0],), w, np.zeros(w.shape[0], np.float32))
    hidden = graph.Stage([graph.LinearPath(graph.INPUT, [dense(w1)])], np.zeros(2), True, (2,))
    logits = graph.Stage([graph.LinearPath(0, [dense(w2)]), graph.LinearPath(0), graph.LinearPath(graph.INPUT, [dense(w3)])],
                           np.zeros(2), False, (2,))
    model = graph.ConvertedModel((3,), [hidden, logits])
    np.testing.assert_array_equal(model.fan_out(graph.INPUT), [1, 1, 2])
    np.testing.assert_array_equal(model.fan_out(0), [2, 1])  # neuron 0 reaches both outputs, once each
    with pytest.raises(SnnbenchError, match="sources"):
        graph.fan_out(logits)
    x = np.array([[1.0, 2.0, -1.0]])
    h = np.maximum(w1 @ x[0], 0)
    np.testing.assert_allclose(model.forward(x)[0], w2 @ h + h + w3 @ x[0])


@pytest.mark.parametrize("route", ["exact", "average"])
def test_dag_save_load_round_trip(route, tmp_path):
    path, x = _export("resnet", tmp_path)
    converted = onnx_ops.extract(path, maxpool=route)
    converted_files.save(converted, tmp_path / "snn")
    assert json.loads((tmp_path / "snn" / converted_files.SPEC_FILE).read_text())["format"] == converted_files.SPEC_FORMAT
    loaded = converted_files.load_any(tmp_path / "snn")
    np.testing.assert_array_equal(loaded.forward(x), converted.forward(x))
    assert [(s.name, s.shape, s.sources) for s in loaded.stages] == [(s.name, s.shape, s.sources)
                                                                      for s in converted.stages]
    assert loaded.approximations == converted.approximations and loaded.input_shape == (1, 28, 28)
    assert len(loaded.linear_ops()) == len(converted.linear_ops())  # shared ops stay shared
    assert loaded.macs() == converted.macs() > 0


def test_format_1_chain_spec_still_loads(tmp_path):
    """A spec written before graphs (a chain of stages, each a list of ops with their biases)."""
    rng = np.random.default_rng(2)
    w1, b1, w2, b2 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (4,), (2, 4), (2,)))
    np.savez(tmp_path / converted_files.WEIGHTS_FILE, **{"stage0.op0.weight": w1, "stage0.op0.bias": b1,
                                                  "stage1.op0.weight": w2, "stage1.op0.bias": b2})

    def op(i, n_in, n_out):
        return {"kind": "dense", "in_shape": [n_in], "out_shape": [n_out], "kernel": [], "strides": [1, 1],
                "padding": "valid", "weight": f"stage{i}.op0.weight", "bias": f"stage{i}.op0.bias"}
    spec = {"format": "snnbench-layers/1", "input_shape": [3], "source": "old.onnx",
            "stages": [{"activation": "relu", "ops": [op(0, 3, 4)]}, {"activation": None, "ops": [op(1, 4, 2)]}]}
    (tmp_path / converted_files.SPEC_FILE).write_text(json.dumps(spec))
    loaded = converted_files.load(tmp_path)
    assert loaded.is_chain and len(loaded.hidden) == 1
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(loaded.forward(x), np.maximum(x @ w1.T + b1, 0) @ w2.T + b2, rtol=1e-6)


def test_unsupported_op_gives_one_line_naming_op_and_node(tmp_path):
    torch.manual_seed(0)
    path = export_onnx(nn.Sequential(nn.Linear(6, 4), nn.Sigmoid(), nn.Linear(4, 2)), 6, tmp_path / "s.onnx")
    (node,) = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Sigmoid"]
    with pytest.raises(SnnbenchError) as info:
        onnx_ops.extract(path)
    message = str(info.value)
    assert "\n" not in message and "'Sigmoid'" in message and repr(node.name) in message


def test_ort_runner_feeds_the_declared_layout_and_rejects_a_size_mismatch(tmp_path):
    path, x = _export("image_cnn", tmp_path)
    runner = OrtRunner(path)
    assert runner.input_shape == (1, 12, 12)
    np.testing.assert_array_equal(runner.predict(x), runner.predict(x.reshape(-1, 1, 12, 12)))
    with pytest.raises(SnnbenchError) as info:
        runner.predict(np.zeros((3, 100), np.float32))
    assert "\n" not in str(info.value) and "144" in str(info.value) and "(3, 100)" in str(info.value)


def test_static_batch_export_converts_and_runs_in_batches_of_its_size(tmp_path):
    """An export without dynamic_axes (input (1, 1, 12, 12), Reshape to (1, -1)): converted, and
    ONNX Runtime fed in batches of exactly 1 by the runner; the rate network equals it."""
    torch.manual_seed(0)
    model = _vgg().eval()
    path = tmp_path / "static.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, 12, 12), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    declared = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in declared] == [1, 1, 12, 12]
    x = np.random.default_rng(1).uniform(0, 1, (N_SAMPLES, 144)).astype(np.float32)
    reference = OrtRunner(path).predict(x)  # 10 images, one batch of 1 at a time
    with torch.no_grad():
        np.testing.assert_allclose(reference, model(torch.as_tensor(x).reshape(-1, 1, 12, 12)).numpy(), atol=1e-5)
    converted = onnx_ops.extract(path)
    logits, _, _ = _rate_network(converted, x)
    assert np.abs(logits - reference).max() <= 1e-4


def test_pad_node_and_same_upper_conv_in_the_rate_network(tmp_path):
    """A Pad node (asymmetric zeros) and a SAME_UPPER stride-2 conv, as other exporters write
    them: the Nengo rate network equals ONNX Runtime."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = {"shape": np.array([-1, 1, 9, 9], np.int64), "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64),
             "k1": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
             "k2": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
             "w": rng.standard_normal((5, 3 * 5 * 5)).astype(np.float32)}
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Pad", ["r", "pads"], ["p"]),
             helper.make_node("Conv", ["p", "k1"], ["c1"], pads=[0, 1, 2, 0]),
             helper.make_node("Relu", ["c1"], ["a1"]),
             helper.make_node("Conv", ["a1", "k2"], ["c2"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["a2"]),
             helper.make_node("Flatten", ["a2"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "padded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 81])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = tmp_path / "padded.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.uniform(0, 1, (N_SAMPLES, 81)).astype(np.float32)
    reference = OrtRunner(path).predict(x)
    logits, _, _ = _rate_network(onnx_ops.extract(path), x)
    assert np.abs(logits - reference).max() <= 1e-4



def test_converted_snntorch_layers_compute_the_graphs_ops(tmp_path):
    """Each op of a CNN with asymmetric, strided, dilated and grouped convolutions and average
    pooling, as the snntorch engine builds it, computes what the converted graph computes."""
    from snnbench.engines.pytorch import torch_layer

    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
    converted = onnx_ops.extract(export_onnx(model, (1, 12, 12), tmp_path / "m.onnx"))
    ops = [op for stage in converted.stages for op in stage.ops]
    assert {op.kind for op in ops} == {"conv", "avgpool", "dense"}
    for op in ops:
        x = torch.rand(5, op.size_in, dtype=torch.float64)
        layer = torch_layer(op).double()
        torch.testing.assert_close(layer(x), op.apply(x), rtol=1e-9, atol=1e-9)


def test_converted_snntorch_refuses_bounded_layers(tmp_path):
    """A Clip (ReLU6) layer stops the snntorch engine in one line instead of running unbounded."""
    from snnbench import engines

    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU6(), nn.Linear(4, 2))
    converted = onnx_ops.extract(export_onnx(model, 6, tmp_path / "m.onnx"))
    layers = [LayerParams(neuron="if", rate_scale=RATE_SCALE) for _ in converted.stages]
    with pytest.raises(SnnbenchError, match="nengo-snn"):
        engines.build("snntorch-snn", converted, {"layers": layers})
