"""The converted SNN as a NIR graph: what it holds, and the round trip through snntorch."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import calibrated_reference_mlp, require_data
from snnbench.conversion.nengo_net import LayerParams, SimConfig, readout
from snnbench.errors import SnnbenchError


def snntorch_network(graph):
    """The graph in snntorch (``snntorch.import_nir.import_from_nir``), its IF neurons made the
    ones the graph describes: snntorch 1.0's importer maps ``nir.IF`` to ``Leaky(beta=0.9,
    init_hidden=False)``, a leaky neuron whose (spikes, membrane) output the graph executor passes
    on as one value; each is replaced by a non-leaky ``Leaky(beta=1)`` with reset by subtraction.
    Its ``Flatten`` takes NIR's ``start_dim`` (which counts from the first feature dimension) as
    torch's (which counts the batch): shifted by one here."""
    import nir
    import snntorch
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Flatten):
            setattr(net, name, torch.nn.Flatten(node.start_dim + 1, node.end_dim))
        if isinstance(node, nir.IF):
            threshold = float(np.unique(node.v_threshold)[0])
            setattr(net, name, snntorch.Leaky(beta=1.0, threshold=threshold, init_hidden=True,
                                              reset_mechanism="subtract", reset_delay=False))
    return net


def run_snntorch(net, graph, x: np.ndarray, steps: int) -> np.ndarray:
    """Logits of ``x`` (n, features) after ``steps`` steps, read out as the graph's metadata says
    (mean over the steps), each IF membrane starting at the graph's initial voltage."""
    import nir

    x = torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), *graph.nodes["input"].input_type["input"]))
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF):
            start = node.metadata.get("initial_voltage", 0.0)
            start = float(start) if not isinstance(start, str) else 0.0  # a random start is not reproduced
            getattr(net, name).mem = torch.full((len(x), *node.input_type["input"]), start)
    outputs = []
    with torch.no_grad():
        for _ in range(steps):
            out = net(x)
            outputs.append(out[0] if isinstance(out, tuple) else out)
    return readout(torch.stack(outputs, dim=1).numpy(), steps, graph.metadata.get("readout", "mean"))


@pytest.fixture(scope="module")
def calibrated_mlp():
    return calibrated_reference_mlp(train_limit=2000)


def test_the_graph_holds_the_scaled_layers_and_reads_back(calibrated_mlp, tmp_path):
    import nir

    from snnbench.conversion.nir_export import write_nir

    model, layers = calibrated_mlp
    sim = SimConfig(steps=8)
    graph = nir.read(str(write_nir(model, layers, sim, tmp_path / "net.nir")))
    assert [type(graph.nodes[k]).__name__ for k in ("input", "layer0_op0", "layer0", "readout_op0", "output")] == \
        ["Input", "Affine", "IF", "Affine", "Output"]
    (dense,), rs = model.stages[0].ops, layers[0].rate_scale
    np.testing.assert_allclose(graph.nodes["layer0_op0"].weight, 0.001 * rs * dense.weight, rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["readout_op0"].weight, model.stages[1].ops[0].weight / (rs * 0.001),
                               rtol=1e-5)
    assert graph.nodes["layer0"].metadata["initial_voltage"] == 0.5 and graph.metadata["steps"] == 8


def test_snntorch_runs_the_graph_as_nengo_does(calibrated_mlp, tmp_path):
    """Imported into snntorch, the graph predicts what the Nengo network predicts at the same
    step count (>= 99% of the images; they differ only where an IF neuron would fire twice in
    one step, which snntorch's neuron cannot)."""
    import nir

    from snnbench.conversion.nir_export import write_nir
    from snnbench.data import load_features
    from snnbench.engines.nengo import NengoRunner

    model, layers = calibrated_mlp
    sim = SimConfig(steps=8, minibatch=100)
    test = load_features("image", "test").subset(np.arange(500))
    graph = nir.read(str(write_nir(model, layers, sim, tmp_path / "net.nir")))
    snntorch_logits = run_snntorch(snntorch_network(graph), graph, test.x, sim.steps)
    with NengoRunner(model, layers, sim, counters=False) as runner:
        nengo_logits = runner.predict(test.x)
    agreement = (snntorch_logits.argmax(1) == nengo_logits.argmax(1)).mean()
    assert agreement >= 0.99, agreement


def test_what_nir_cannot_take_fails_in_one_line(calibrated_mlp, tmp_path):
    from snnbench.conversion.nir_export import write_nir

    model, layers = calibrated_mlp
    with pytest.raises(SnnbenchError, match="writes IF neurons"):
        write_nir(model, [LayerParams("lif")], SimConfig(), tmp_path / "lif.nir")
    assert not (tmp_path / "lif.nir").exists()
    with pytest.raises(SnnbenchError, match="per-channel"):  # per-channel calibration: refused, not dropped
        write_nir(model, [replace(p, channel_scales=[1.0] * 256) for p in layers], SimConfig(), tmp_path / "c.nir")


def test_a_cnn_round_trips_through_snntorch(tmp_path):
    """Conv, average pool and flatten nodes too (snntorch's Flatten counts the batch: shifted)."""
    require_data()
    import nir

    from snnbench.conversion.calibration import Calibration, calibrate, mnist_training_images
    from snnbench.conversion.nir_export import write_nir
    from snnbench.conversion.onnx_ops import extract
    from snnbench.data import load_features
    from snnbench.engines.nengo import NengoRunner
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe

    model = extract(trained_conversion_model("cnn", Recipe(epochs=1, train_limit=2000)) / "model.onnx")
    layers, _ = calibrate(model, mnist_training_images(0), Calibration(samples=300))
    sim = SimConfig(steps=6, minibatch=100)
    graph = nir.read(str(write_nir(model, layers, sim, tmp_path / "cnn.nir")))
    assert {"Conv2d", "AvgPool2d", "Flatten"} <= {type(n).__name__ for n in graph.nodes.values()}
    x = load_features("image", "test").x[:200]
    with NengoRunner(model, layers, sim, counters=False) as runner:
        nengo_logits = runner.predict(x)
    agreement = (run_snntorch(snntorch_network(graph), graph, x, sim.steps).argmax(1) == nengo_logits.argmax(1)).mean()
    assert agreement >= 0.99, agreement
