"""The converted SNN as a NIR graph: what it holds, and the round trip through snntorch."""

from dataclasses import replace

import numpy as np
import pytest

from conftest import calibrated_reference_mlp, require_data
from snnbench.conversion.nengo_net import LayerParams, SimConfig
from snnbench.errors import SnnbenchError


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

    from snnbench.conversion.nir_export import run_snntorch, snntorch_network, write_nir
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
    from snnbench.conversion.nir_export import run_snntorch, snntorch_network, write_nir
    from snnbench.conversion.onnx_io import extract
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
