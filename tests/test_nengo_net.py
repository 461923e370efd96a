"""The Nengo network built from ONNX: rate-mode exactness on real MNIST images, noise, activity."""

import json

import numpy as np
import pytest

from conftest import require_data
from snnbench.errors import ConfigError, SnnbenchError
from snnbench.conversion.nengo_net import (LayerParams, SimConfig, build_network, fed_stages, load_params, save_params,
                                           stage_currents)
from snnbench.noise import NoiseSpec
from snnbench.conversion.graph import INPUT, fan_out
from snnbench.conversion.onnx_ops import extract
from snnbench.engines.nengo import NengoRunner
from snnbench.engines.ort import OrtRunner
from snnbench.training.cache import read_summary

N_IMAGES = 120  # not a multiple of the minibatch: the last batch is padded


@pytest.fixture(scope="module")
def mnist():
    require_data()
    from snnbench.data import load_features

    test = load_features("image", "test")
    return test.x[:N_IMAGES], test.y[:N_IMAGES]


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def trained(request):
    require_data()
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe

    return trained_conversion_model(request.param, Recipe(epochs=1, train_limit=1000))


def _rate(steps=2, **layer) -> tuple:
    return LayerParams("relu-rate", **layer), SimConfig(steps=steps, readout="last", minibatch=50)


@pytest.mark.parametrize("rate_scale", [1.0, 7.5])
def test_rate_mode_reproduces_onnx_runtime(trained, mnist, rate_scale):
    x, _ = mnist
    reference = OrtRunner(trained / "model.onnx").predict(x)
    layer, sim = _rate(rate_scale=rate_scale)
    with NengoRunner(trained, layer, sim) as runner:
        logits = runner.predict(x)
    assert logits.shape == reference.shape
    assert np.abs(logits - reference).max() <= 1e-4


def test_rate_mode_activity_counts(trained, mnist):
    """relu-rate 'spikes' per step = activation x rate_scale x dt; accumulates weight them by fan-out."""
    x, _ = mnist
    converted = extract(trained / "model.onnx")
    layer, sim = _rate(rate_scale=4.0)
    with NengoRunner(converted, layer, sim) as runner:
        runner.predict(x)
        stats = runner.last_stats
    h, spikes, acs = x.astype(np.float64), 0.0, 0.0
    import torch
    for i, stage in enumerate(converted.hidden):
        h = torch.relu(stage.apply(torch.as_tensor(h))).numpy()
        spikes += h.sum() * 4.0 * sim.dt
        acs += (h * 4.0 * sim.dt) @ fan_out(converted.stages[i + 1])
    n_neurons = sum(s.size_out for s in converted.hidden)
    assert stats["spikes_per_sample"] == pytest.approx(sim.steps * spikes / len(x), rel=1e-4)
    assert stats["spikes_per_neuron_per_step"] == pytest.approx(spikes / (len(x) * n_neurons), rel=1e-4)
    assert stats["synaptic_acs_per_sample"] == pytest.approx(sim.steps * acs.sum() / len(x), rel=1e-4)


def test_the_input_layer_is_a_current_computed_once_per_sample(trained, mnist):
    """The simulated network has no pixel input: the stage that reads the input takes W x as data,
    one value per sample held over the steps (or one per step when the input changes every step)."""
    import torch
    x = mnist[0][:20]
    converted = extract(trained / "model.onnx")
    net = build_network(converted, LayerParams("relu-rate"), SimConfig(), fed=fed_stages(converted))
    assert set(net.inputs) == {"current:layer0"} and fed_stages(converted) == (0,)
    stage = converted.hidden[0]
    expected = stage.pre_activation({INPUT: torch.as_tensor(x, dtype=torch.float64)}).numpy() - stage.bias
    held = stage_currents(converted, (0,), {INPUT: x[:, None, :]})["current:layer0"]
    assert held.shape == (20, 1, stage.size_out) and held.dtype == np.float32
    np.testing.assert_allclose(held[:, 0], expected, atol=1e-4)
    per_step = stage_currents(converted, (0,), {INPUT: np.stack([x, 2 * x], axis=1)})["current:layer0"]
    np.testing.assert_allclose(per_step, np.stack([held[:, 0], 2 * held[:, 0]], axis=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(SnnbenchError, match="read the network input"):
        build_network(converted, LayerParams("relu-rate"), SimConfig(), fed=(1,))


def test_one_simulator_takes_each_noise_setting_as_data(trained, mnist):
    """A runner fed at every stage gives, for each noise setting set on it in turn, what a runner
    built for that setting gives; noise reaching stages a runner does not feed stops it."""
    x = mnist[0][:30]
    converted = extract(trained / "model.onnx")
    lif, sim = LayerParams("lif", rate_scale=4.0), SimConfig(steps=6, minibatch=30)
    every_stage = tuple(range(len(converted.stages)))
    assert fed_stages(converted, "post") == every_stage and fed_stages(converted, "input") == (0,)
    with NengoRunner(converted, lif, sim, fed=every_stage) as shared:
        for spec in (NoiseSpec(), NoiseSpec(0.5, "input", seed=1), NoiseSpec(0.5, "pre", "per_step", seed=2),
                     NoiseSpec(0.5, "post", "frozen", seed=3), NoiseSpec(0.5, "post", "per_step", seed=3)):
            shared.noise = spec
            with NengoRunner(converted, lif, sim, spec) as own:
                np.testing.assert_array_equal(shared.predict(x), own.predict(x))
    with NengoRunner(converted, lif, sim) as clean:
        clean.noise = NoiseSpec(0.5, "post")
        with pytest.raises(ConfigError, match="fed="):
            clean.predict(x)


def test_reference_simulator_matches_nengo_dl(trained, mnist):
    x = mnist[0][:4]
    layer, sim = _rate()
    reference = OrtRunner(trained / "model.onnx").predict(x)
    with NengoRunner(trained, layer, SimConfig(steps=2, readout="last", simulator="nengo")) as runner:
        assert np.abs(runner.predict(x) - reference).max() <= 1e-4


@pytest.mark.parametrize("position", ["input", "pre", "post"])
def test_zero_noise_equals_clean_and_noise_is_reproducible(trained, mnist, position):
    if read_summary(trained)["arch"] == "cnn" and position != "pre":
        pytest.skip("one position is enough for the CNN")
    x = mnist[0][:20]
    sim, lif = SimConfig(steps=10, minibatch=20), LayerParams("lif", rate_scale=4.0)
    with NengoRunner(trained, lif, sim) as runner:
        clean = runner.predict(x)
        assert runner.last_stats["spikes_per_sample"] > 0
    with NengoRunner(trained, lif, sim, NoiseSpec(0.0, position, seed=3)) as runner:
        np.testing.assert_array_equal(runner.predict(x), clean)
    noisy = []
    for _ in range(2):
        with NengoRunner(trained, lif, sim, NoiseSpec(0.5, position, seed=3)) as runner:
            noisy.append(runner.predict(x))
    np.testing.assert_array_equal(noisy[0], noisy[1])
    assert np.abs(noisy[0] - clean).max() > 1e-3


def test_frozen_noise_in_rate_mode_matches_the_dnn_with_the_same_draw(trained, mnist):
    """Frozen noise = the DNN's (step 0) draw: input noise in rate mode equals ORT on x + noise,
    and pre noise equals relu(affine + noise) computed from the extracted layers."""
    import torch
    x = mnist[0][:60]
    start = 40  # global index of x[0]: the draws must follow it
    converted = extract(trained / "model.onnx")
    layer, sim = _rate()
    spec = NoiseSpec(0.3, "input", "frozen", seed=5)
    noisy_x = x + spec.draw("input", start, len(x), x.shape[1])
    with NengoRunner(converted, layer, sim, spec) as runner:
        logits = runner.predict(x, start=start)
    assert np.abs(logits - OrtRunner(trained / "model.onnx").predict(noisy_x)).max() <= 1e-4
    spec = NoiseSpec(0.3, "pre", "frozen", seed=5)
    h = torch.as_tensor(x, dtype=torch.float64)
    for i, stage in enumerate(converted.stages):
        h = stage.apply(h)
        if stage.activation:
            h = torch.relu(h + torch.as_tensor(spec.draw(f"layer{i}", start, len(x), stage.size_out)))
    with NengoRunner(converted, layer, sim, spec) as runner:
        assert np.abs(runner.predict(x, start=start) - h.numpy()).max() <= 1e-4


def test_spiking_conversion_with_rate_scaling_is_close_to_the_dnn(mnist):
    """Reference LIF conversion (rate scale 1) of a lightly trained MLP loses much accuracy at
    30 steps; scaling the firing rates up brings it within a few points of the DNN."""
    require_data()
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe

    folder = trained_conversion_model("mlp", Recipe(epochs=1, train_limit=5000))
    x, y = mnist
    dnn = (OrtRunner(folder / "model.onnx").predict(x).argmax(1) == y).mean()
    accuracy, rates = {}, {}
    for scale in (1.0, 10.0):
        with NengoRunner(folder, LayerParams("lif", rate_scale=scale), SimConfig(steps=30)) as runner:
            accuracy[scale] = (runner.predict(x).argmax(1) == y).mean()
            rates[scale] = runner.last_stats["mean_firing_rate_hz"]
    assert accuracy[10.0] >= dnn - 0.05
    assert accuracy[10.0] > accuracy[1.0] + 0.2
    assert 0 < rates[1.0] < rates[10.0] < 1 / 0.002  # below the refractory limit


def test_params_json_round_trip_and_errors(tmp_path):
    layers = [LayerParams("lif", gain=1.5, rate_scale=3.0, synapse=0.005), LayerParams("if", bias_offset=0.1)]
    path = save_params(tmp_path / "p.json", layers, {"steps": 12})
    loaded, sim = load_params(path)
    assert loaded == layers and sim == {"steps": 12}
    (tmp_path / "partial.json").write_text(json.dumps({"layers": [{"gain": 2.0}]}))
    loaded, sim = load_params(tmp_path / "partial.json", defaults=LayerParams(rate_scale=5.0))
    assert loaded == [LayerParams(gain=2.0, rate_scale=5.0)] and sim == {}
    (tmp_path / "bad.json").write_text(json.dumps({"layers": [{"gian": 2.0}]}))
    with pytest.raises(SnnbenchError, match="gian"):
        load_params(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SnnbenchError):
        load_params(tmp_path / "broken.json")
    with pytest.raises(SnnbenchError):
        LayerParams("izhikevich")
    with pytest.raises(SnnbenchError):
        SimConfig(readout="max")
