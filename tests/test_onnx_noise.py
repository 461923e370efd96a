"""Noise inserted into ONNX graphs: std 0 is a no-op, noise lands where it should, bad graphs fail clearly."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from snnbench.errors import SnnbenchError
from snnbench.noise import NoiseSpec
from snnbench.models.export import export_onnx
from snnbench.conversion.onnx_noise import add_noise, hidden_activations


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6), torch.nn.ReLU(),
                                torch.nn.Linear(6, 3)).eval()
    path = export_onnx(model, 12, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, path


def _run(graph, x, spec, start=0):
    session = ort.InferenceSession(graph.serialized())
    return session.run(None, {"input": x, **graph.feeds(spec)(start, len(x))})[0]


def _reference(model, x, spec, start=0):
    """The MLP evaluated layer by layer in torch with the same draws added."""
    h = torch.as_tensor(x + spec.draw("input", start, len(x), x.shape[1]) if spec.position == "input" else x)
    layers = list(model)
    hidden = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.ReLU):
            noise = torch.as_tensor(spec.draw(f"layer{hidden}", start, len(x), h.shape[1]))
            h = layer(h + noise) if spec.position == "pre" else layer(h)
            h = h + noise if spec.position == "post" else h
            hidden += 1
        else:
            h = layer(h)
    return h.detach().numpy()


@pytest.mark.parametrize("position", ["input", "pre", "post"])
def test_zero_noise_gives_original_logits(mlp, position):
    model, path = mlp
    x = np.random.default_rng(1).random((250, 12), dtype=np.float32)
    clean = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    noisy = _run(add_noise(path, position), x, NoiseSpec(0.0, position, seed=4))
    np.testing.assert_array_equal(noisy, clean)


@pytest.mark.parametrize("position", ["input", "pre", "post"])
def test_noise_lands_at_its_position(mlp, position):
    model, path = mlp
    x = np.random.default_rng(2).random((150, 12), dtype=np.float32)
    spec = NoiseSpec(0.7, position, seed=5)
    graph = add_noise(path, position)
    assert [i.layer for i in graph.inputs] == (["input"] if position == "input" else ["layer0", "layer1"])
    logits = _run(graph, x, spec, start=230)
    np.testing.assert_allclose(logits, _reference(model, x, spec, start=230), atol=1e-5)
    clean = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    assert np.abs(logits - clean).max() > 1e-2


def test_feeds_follow_global_sample_index(mlp):
    graph = add_noise(mlp[1], "post")
    feeds = graph.feeds(NoiseSpec(1.0, "post", seed=9))
    whole = feeds(0, 300)
    part = feeds(120, 50)
    assert whole.keys() == {"noise_layer0", "noise_layer1"}
    np.testing.assert_array_equal(part["noise_layer1"], whole["noise_layer1"][120:170])
    assert whole["noise_layer0"].shape == (300, 8) and whole["noise_layer0"].dtype == np.float32


def test_original_graph_untouched(mlp):
    before = onnx.load(str(mlp[1]))
    add_noise(before, "pre")
    assert [n.op_type for n in before.graph.node].count("Add") == 0
    assert len(before.graph.input) == 1 and len(hidden_activations(before)) == 2


def test_graph_without_activation_fails_in_one_line(tmp_path):
    path = export_onnx(torch.nn.Linear(5, 2), 5, tmp_path / "linear.onnx")
    with pytest.raises(SnnbenchError, match="no activation node") as error:
        add_noise(path, "post")
    assert "\n" not in str(error.value)
    assert len(add_noise(path, "input").inputs) == 1


def test_bad_position_and_mismatched_spec(mlp):
    with pytest.raises(SnnbenchError, match="cannot add noise at 'middle'"):
        add_noise(mlp[1], "middle")
    with pytest.raises(SnnbenchError, match="add_noise"):
        add_noise(mlp[1], "pre").feeds(NoiseSpec(1.0, "post"))
    with pytest.raises(SnnbenchError, match="no ONNX model"):
        add_noise(mlp[1].parent / "missing", "pre")


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
def test_hidden_layers_are_the_converted_networks_or_it_stops(arch, tmp_path):
    """Noise at ``layer{i}`` lands on the same layer in ONNX Runtime (the i-th activation node) as in
    Nengo (the converted model's i-th hidden stage that is a layer of the graph): for every
    architecture converted in the tests, by either MaxPool route (the exact route's populations take
    no noise; the rate-mode network under the same pre and post draws gives ONNX Runtime's logits)."""
    from dataclasses import replace

    from snnbench import engines
    from snnbench.conversion.nengo_net import LayerParams, SimConfig
    from snnbench.conversion.onnx_ops import extract
    from snnbench.conversion.onnx_noise import check_hidden_layers
    from snnbench.models.conversion import INPUT_SHAPES, build_model

    torch.manual_seed(0)
    path = export_onnx(build_model(arch), INPUT_SHAPES[arch], tmp_path / "model.onnx")
    converted = extract(path, maxpool="average")
    check_hidden_layers(converted)
    assert [n.name for n in hidden_activations(path)] == [s.name for s in converted.hidden]
    exact = extract(path, maxpool="exact")
    check_hidden_layers(exact)
    assert [n.name for n in hidden_activations(path)] == [s.name for s in exact.noise_layers().values()]
    if arch != "resnet":  # no MaxPool: the routes agree
        return
    assert len(exact.hidden) > len(exact.noise_layers())  # the exact route's populations
    x = np.random.default_rng(0).uniform(0, 1, (20, 784)).astype(np.float32)
    sim = replace(SimConfig(steps=2), readout="last", minibatch=20)
    for position in ("pre", "post"):
        noise = NoiseSpec(0.3, position, "frozen", seed=4)
        reference = engines.build("ort-dnn", path, {"activity": False}).predict(x, noise)
        with engines.build("nengo-snn", exact, {"layers": LayerParams("relu-rate"), "sim": sim,
                                                "counters": False}) as model:
            assert np.abs(model.predict(x, noise) - reference).max() < 1e-4, position


def test_a_clip_layer_of_its_own_stops_noisy_nengo(tmp_path):
    """ReLU6 exports as a Clip node: a population of the converted network, but no Relu node."""
    from snnbench.conversion.onnx_ops import extract
    from snnbench.conversion.onnx_noise import check_hidden_layers

    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU6(), torch.nn.Linear(5, 4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 2))
    path = export_onnx(model, 6, tmp_path / "clip.onnx")
    with pytest.raises(SnnbenchError, match="layer 0 is population"):
        check_hidden_layers(extract(path))
