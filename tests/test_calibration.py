"""Calibrated conversion: rate scales from training activations (never test data), the signed IF
neuron in both simulators, activity counts of multi-spike steps, readout modes, and calibrated vs
reference conversion of a small trained network."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import refuse_test_split, require_data
from snnbench.conversion import calibration as cal
from snnbench.errors import SnnbenchError
from snnbench.conversion.nengo_net import SignedIF, SimConfig, readout
from snnbench.models.export import export_onnx
from snnbench.conversion.onnx_ops import extract
from snnbench.engines.nengo import NengoRunner
from snnbench.engines.ort import OrtRunner


def _random_net(tmp_path, sizes=(20, 16, 12, 4), seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    path = export_onnx(torch.nn.Sequential(*layers[:-1]), sizes[0], tmp_path / "net.onnx")
    return extract(path), path


# --------------------------------------------------------------------------- calibration arithmetic

def test_rate_scale_puts_the_percentile_activation_at_the_target_rate(tmp_path):
    model, _ = _random_net(tmp_path)
    x = np.random.default_rng(1).random((300, 20), dtype=np.float32)
    w0, b0 = (torch.as_tensor(v, dtype=torch.float64) for v in (model.stages[0].ops[0].weight, model.stages[0].bias))
    h0 = torch.relu(torch.as_tensor(x, dtype=torch.float64) @ w0.T + b0).numpy()
    for percentile, target in ((99.9, 1.0), (100.0, 0.5), (50.0, 0.8)):
        config = cal.Calibration(samples=300, percentile=percentile, target_rate=target)
        layers, scales = cal.calibrate(model, x, config, dt=0.002)
        assert len(layers) == len(scales) == 2
        expected = np.percentile(h0[h0 > 0], percentile)
        assert scales[0] == pytest.approx(expected, rel=1e-5)
        assert layers[0].rate_scale == pytest.approx(target / (expected * 0.002), rel=1e-5)
        assert (layers[0].neuron, layers[0].gain, layers[0].bias_scale, layers[0].initial_voltage) == \
            ("if", 1.0, 1.0, "half")
    assert cal.percentile_value("max") == 100.0 and cal.percentile_value("99") == 99.0


def test_the_calibration_subsets_activations_are_computed_once_per_model_and_subset(tmp_path, monkeypatch):
    """Every rate setting and step count of a conversion calibrates from the same activations: computed once
    (float32, the DNN's to 1e-5), again only for another subset or another model."""
    model, _ = _random_net(tmp_path)
    other, _ = _random_net(tmp_path, seed=1)
    x = np.random.default_rng(1).random((300, 20), dtype=np.float32)
    calls = []
    compute = cal.hidden_activations
    monkeypatch.setattr(cal, "hidden_activations", lambda m, inputs: calls.append(len(inputs)) or compute(m, inputs))
    first = cal.calibrate(model, x, cal.Calibration(samples=200))
    for rates in cal.RATES:
        cal.calibrate(model, x, cal.Calibration(samples=200, rates=rates, scales="channel"))
    assert calls == [200]
    subset, activations = cal.calibration_activations(model, x, cal.Calibration(samples=200))
    for a, exact in zip(activations, model.activations(subset)[:-1]):
        np.testing.assert_allclose(a, exact, rtol=1e-5, atol=1e-6)
    cal.calibrate(model, x, cal.Calibration(samples=100))
    cal.calibrate(other, x, cal.Calibration(samples=100))
    assert calls == [200, 100, 100]
    assert cal.calibrate(model, x, cal.Calibration(samples=200)) == first and calls == [200, 100, 100, 200]


def test_calibration_subset_is_seeded_and_bad_settings_are_one_line_errors():
    x = np.arange(100)[:, None].astype(np.float32)
    a, b = cal.calibration_inputs(x, 10, seed=3), cal.calibration_inputs(x, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 10 and not np.array_equal(a, cal.calibration_inputs(x, 10, seed=4))
    assert len(cal.calibration_inputs(x, 500, seed=0)) == 100
    for bad in (dict(percentile=0), dict(target_rate=3.0), dict(samples=0), dict(neuron="lif-rate"),
                dict(initial_voltage="random")):
        with pytest.raises(SnnbenchError):
            cal.Calibration(**bad)


def test_lif_mapping_fires_about_the_if_rate():
    """The calibrated LIF's current gives about rate_scale x activation Hz (its rate curve is
    close to (J - 1/2) / tau_rc above threshold)."""
    import nengo

    layer = cal.layer_params(2.0, cal.Calibration(neuron="lif", target_rate=0.5), dt=0.001)
    activations = np.array([0.5, 1.0, 2.0])
    current = layer.gain * layer.rate_scale * activations + layer.rate_scale * layer.bias_offset
    rates = nengo.LIFRate(tau_rc=layer.tau_rc, tau_ref=layer.tau_ref).rates(current, 1.0, 0.0).ravel()
    np.testing.assert_allclose(rates, layer.rate_scale * activations, rtol=0.03)


# --------------------------------------------------------------------------- neurons and activity

def test_signed_if_integrates_negative_current_and_may_fire_twice_a_step():
    neuron, dt = SignedIF(amplitude=0.5), 0.001
    voltage, output = np.array([0.5]), np.zeros(1)
    outputs = []
    for current in (-800.0, 900.0, 2500.0, 0.0):  # -0.8, +0.9, +2.5 per step
        neuron.step(dt, np.array([current]), output, voltage)
        outputs.append(output[0] * dt / 0.5)  # spikes this step
    assert outputs == [0, 0, 3, 0]  # 0.5 - 0.8 + 0.9 = 0.6 < 1; + 2.5 = 3.1 -> 3 spikes
    assert voltage[0] == pytest.approx(0.1)
    import nengo
    rectified, voltage = nengo.SpikingRectifiedLinear(amplitude=0.5), np.array([0.5])
    rectified.step(dt, np.array([-800.0]), output, voltage)
    assert voltage[0] == pytest.approx(0.5)  # nengo's IF drops negative current


def test_signed_if_runs_the_same_in_nengo_dl_and_nengo(tmp_path):
    model, _ = _random_net(tmp_path)
    x = np.random.default_rng(2).random((5, 20), dtype=np.float32)
    layers, _ = cal.calibrate(model, x, cal.Calibration(samples=5))
    logits = {}
    for simulator in ("nengo_dl", "nengo"):
        with NengoRunner(model, layers, SimConfig(steps=6, minibatch=5, simulator=simulator)) as runner:
            logits[simulator] = runner.predict(x)
            assert runner.last_stats["spikes_per_sample"] > 0
    np.testing.assert_allclose(logits["nengo_dl"], logits["nengo"], atol=1e-4)


def test_activity_counts_multi_spike_steps(tmp_path):
    """One hidden layer fed a constant current, IF neurons starting at 1/2: spikes per step are
    known exactly (floor(1/2 + q t) - floor(1/2 + q (t-1)) for q spikes per step)."""
    model, _ = _random_net(tmp_path, sizes=(20, 32, 4))
    x = np.random.default_rng(3).random((40, 20), dtype=np.float32)
    layers, scales = cal.calibrate(model, x, cal.Calibration(samples=40, percentile=50.0, target_rate=1.0))
    steps = 6
    with NengoRunner(model, layers, SimConfig(steps=steps, simulator="nengo")) as runner:
        runner.predict(x)
        stats = runner.last_stats
    rates = layers[0].rate_scale * layers[0].per_neuron(model.hidden[0], "channel_scales", 1.0)  # per neuron
    q = model.activations(x)[0] * rates * 0.001
    t = np.arange(steps + 1)[:, None, None]
    per_step = np.diff(np.floor(0.5 + q[None] * t), axis=0)  # (steps, n, neurons)
    assert stats["spikes_per_neuron_per_step"] == pytest.approx(per_step.mean(), rel=1e-5)
    assert stats["active_per_sample"] == pytest.approx((per_step > 0).sum() / len(x))
    share = (per_step > 1).any(axis=0).mean()
    assert 0 < share < 1 and stats["multi_spike_neuron_share"] == pytest.approx(share)


def test_readout_modes():
    outputs = np.arange(2 * 6 * 3, dtype=np.float64).reshape(2, 6, 3)
    np.testing.assert_array_equal(readout(outputs, 4, "mean"), outputs[:, :4].mean(axis=1))
    np.testing.assert_array_equal(readout(outputs, 4, "last"), outputs[:, 3])
    np.testing.assert_array_equal(readout(outputs, 4, "second-half"), outputs[:, 2:4].mean(axis=1))
    np.testing.assert_array_equal(readout(outputs, 1, "second-half"), outputs[:, 0])
    with pytest.raises(SnnbenchError):
        readout(outputs, 4, "max")
    with pytest.raises(SnnbenchError):
        SimConfig(readout="max")


# --------------------------------------------------------------------------- on MNIST

@pytest.fixture(scope="module")
def small_mlp():
    require_data()
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe

    folder = trained_conversion_model("mlp", Recipe(epochs=1, train_limit=1000))  # reads the test set: before the patch
    return folder, extract(folder / "model.onnx")


def test_calibration_reads_training_images_only(small_mlp, monkeypatch):
    from snnbench import tuning
    from snnbench.benchmarks.convert import conversion_setting, resolve
    from snnbench.cli.main import build_parser

    folder, model = small_mlp
    refuse_test_split(monkeypatch)
    parser = build_parser("convert")
    settings = resolve(parser.settings(parser.parse_args(["--method", "calibrated", "--calibration-samples", "200",
                                                          "--seed", "5", "--steps", "4"])))
    document = conversion_setting(model, settings)  # what `snnbench convert` calibrates with
    assert document["source"]["method"] == "calibrated" and document["sim"]["steps"] == 4
    assert document["source"]["calibration_inputs"] == 200 and len(document["layers"]) == 1
    task = tuning.ConversionTask(epochs=1, train_limit=1000, calibration_samples=200, seed=5)
    assert tuning.calibrated_layers(task, model) == document["layers"]  # tune starts where convert calibrates


def test_calibrated_conversion_beats_the_reference_on_held_out_images(small_mlp):
    from snnbench.data import load_features

    folder, model = small_mlp
    train = load_features("image", "train")
    held_out = train.subset(np.arange(50000, 50300))  # not among the 1,000 the DNN trained on
    layers, _ = cal.calibrate(model, train.x[:1000], cal.Calibration())
    dnn = (OrtRunner(folder / "model.onnx").predict(held_out.x).argmax(1) == held_out.y).mean()
    accuracy = {}
    for method, setting in (("reference", cal.reference_layers()), ("calibrated", layers)):
        with NengoRunner(model, setting, SimConfig(steps=8, minibatch=100), counters=False) as runner:
            accuracy[method] = (runner.predict(held_out.x).argmax(1) == held_out.y).mean()
    assert accuracy["calibrated"] >= dnn - 0.02
    assert accuracy["calibrated"] > accuracy["reference"] + 0.2


# --------------------------------------------------------------------------- per-channel scales, error correction

def _conv_net(tmp_path, clip: bool = False):
    """A small random CNN (stride-2 padded convs; optionally a ReLU6 layer) and inputs in [0, 1)."""
    torch.manual_seed(0)
    act = torch.nn.ReLU6 if clip else torch.nn.ReLU
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, 1, 1), torch.nn.ReLU(), torch.nn.Conv2d(6, 8, 3, 2, 1), act(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 4))
    with torch.no_grad():
        net[0].weight.mul_(torch.linspace(0.2, 3.0, 6).reshape(-1, 1, 1, 1))  # channels of different ranges
    model = extract(export_onnx(net, (1, 10, 10), tmp_path / "cnn.onnx"))
    return model, np.random.default_rng(1).random((400, 100), dtype=np.float32)


def test_per_channel_scales_put_each_channels_percentile_at_the_target_rate(tmp_path):
    model, x = _conv_net(tmp_path)
    config = cal.Calibration(samples=400, percentile=99.0, target_rate=0.8, scales="channel")
    layers, _ = cal.calibrate(model, x, config, dt=0.001)
    h0 = model.activations(x)[0].reshape(len(x), 6, -1)
    for c in range(6):
        channel = h0[:, c][h0[:, c] > 0]
        rate = layers[0].rate_scale * layers[0].channel_scales[c]
        assert rate == pytest.approx(0.8 / (np.percentile(channel, 99.0) * 0.001), rel=1e-5)
    assert len(layers[2].channel_scales) == 16  # a dense layer: one per neuron
    assert max(layers[0].channel_scales) / min(layers[0].channel_scales) > 3
    per_layer, _ = cal.calibrate(model, x, cal.Calibration(samples=400, scales="layer"), dt=0.001)
    assert all(p.channel_scales is None for p in per_layer)
    with NengoRunner(model, [replace(p, neuron="relu-rate") for p in layers], SimConfig(steps=2, readout="last"),
                     counters=False) as runner:  # per-channel scales leave the rate network exact
        assert np.abs(runner.predict(x[:20]) - model.forward(x[:20])).max() <= 1e-4


def test_balanced_factors_minimise_the_rounding_noise_at_the_same_spikes():
    assert cal.balanced_factors([8.0, 1.0]) == pytest.approx([0.9, 1.8])  # c * A^(-1/3), c = 9 / 5
    assert cal.balanced_factors([5.0, 0.0, 5.0]) == pytest.approx([1.0, 1.0, 1.0])  # a silent layer keeps 1
    spikes = np.array([1600.0, 60.0, 210.0, 38.0])
    factors = cal.balanced_factors(spikes)
    assert (factors * spikes).sum() == pytest.approx(spikes.sum())
    noise = lambda m: (1.0 / np.asarray(m) ** 2).sum()  # noqa: E731
    rng = np.random.default_rng(0)
    for _ in range(50):  # no other factors with the same spikes round less
        other = factors * np.exp(rng.normal(0, 0.3, len(spikes)))
        other *= spikes.sum() / (other * spikes).sum()
        assert noise(other) >= noise(factors)


@pytest.mark.parametrize("scales", ["channel", "layer"])
def test_balanced_rates_share_the_same_expected_spikes_out_and_keep_the_rate_network_exact(tmp_path, scales):
    model, x = _conv_net(tmp_path, clip=True)
    activations = cal.hidden_activations(model, x[:200])
    uniform, _ = cal.calibrate(model, x[:200], cal.Calibration(samples=200, scales=scales))
    report = {}
    balanced, _ = cal.calibrate(model, x[:200], cal.Calibration(samples=200, scales=scales, rates="balanced"),
                                report=report)
    before = cal.expected_spikes(activations, model, uniform, 0.001)
    after = cal.expected_spikes(activations, model, balanced, 0.001)
    assert report["rate_factors"] == pytest.approx(list(cal.balanced_factors(before)))
    assert [b.rate_scale / u.rate_scale for u, b in zip(uniform, balanced)] == pytest.approx(report["rate_factors"])
    assert [b.channel_scales for b in balanced] == [u.channel_scales for u in uniform]
    widest = int(np.argmax(before))  # the layer firing most gives spikes up, the others get more
    assert report["rate_factors"][widest] < 1 < min(f for i, f in enumerate(report["rate_factors"]) if i != widest)
    assert after.sum() == pytest.approx(before.sum(), rel=0.02)  # a Clip layer's bound may cap a little
    with NengoRunner(model, [replace(p, neuron="relu-rate") for p in balanced], SimConfig(steps=2, readout="last"),
                     counters=False) as runner:
        assert np.abs(runner.predict(x[:20]) - model.forward(x[:20])).max() <= 1e-4


def test_torch_simulation_equals_the_nengo_network(tmp_path):
    """correction.simulate (what the correction measures errors with) computes the Nengo
    network's spiking logits: per-channel scales, bias and initial voltages, a bounded layer."""
    from snnbench.conversion.correction import simulate

    model, x = _conv_net(tmp_path, clip=True)
    assert model.hidden[1].upper == 6.0
    layers, _ = cal.calibrate(model, x[:200], cal.Calibration(samples=200, scales="channel"), dt=0.001)
    rng = np.random.default_rng(2)
    layers = [replace(p, channel_bias=list(rng.normal(0, 0.05, s.channels)),
                      channel_voltage=list(rng.uniform(0, 1, s.channels))) for p, s in zip(layers, model.hidden)]
    with NengoRunner(model, layers, SimConfig(steps=6, minibatch=100), counters=False) as runner:
        nengo_logits = runner.predict(x[200:])
    torch_logits = simulate(model, layers, x[200:], steps=6)[-1]
    assert np.abs(nengo_logits - torch_logits).max() <= 1e-5 * max(1.0, np.abs(torch_logits).max())


def test_correction_removes_the_channel_errors_and_brings_the_logits_closer(tmp_path):
    from snnbench.conversion.correction import channel_means, correct, simulate

    model, x = _conv_net(tmp_path)
    layers, _ = cal.calibrate(model, x[:200], cal.Calibration(samples=200, scales="channel"), dt=0.001)
    fixed, report = correct(model, layers, x[:200], steps=4)
    assert len(report) == len(model.hidden)
    assert sum(r["error_after"] for r in report) < 0.5 * sum(r["error_before"] for r in report)
    assert all(len(p.channel_bias) == len(p.channel_voltage) == s.channels for p, s in zip(fixed, model.hidden))
    dnn = model.activations(x[:200])
    last = len(model.hidden) - 1
    for setting in (layers, fixed):  # on the calibration images: each layer's mean matches the DNN's better
        error = channel_means(simulate(model, setting, x[:200], 4)[last], model.hidden[last]) - \
            channel_means(dnn[last], model.hidden[last])
        if setting is layers:
            before = np.abs(error).mean()
    assert np.abs(error).mean() < before
    held_out = x[200:]  # and the logits of other inputs come closer to the DNN's
    gaps = [np.abs(simulate(model, s, held_out, 4)[-1] - model.forward(held_out)).mean() for s in (layers, fixed)]
    assert gaps[1] < gaps[0]
    with pytest.raises(SnnbenchError, match="IF neurons"):
        correct(model, [replace(p, neuron="lif") for p in layers], x[:10], steps=4)
    again, _, logits = correct(model, layers, x[:200], steps=4, x_val=held_out)  # validation inputs ride along
    assert again == fixed  # and never inform the correction
    np.testing.assert_allclose(logits, simulate(model, fixed, held_out, 4, dtype=torch.float32)[-1], atol=1e-5)


@pytest.mark.parametrize("neuron", ["if", "if-rectified"])
def test_spike_counts_without_the_series_equal_the_neurons_stepped(neuron):
    """The counts kept without spike times (signed IF: the running maximum of the summed drive) equal the
    neurons run step by step, for currents held over the steps or not; counts past 255 are kept as floats."""
    from snnbench.conversion import correction
    from snnbench.conversion.graph import Stage
    from snnbench.conversion.nengo_net import LayerParams

    rng = np.random.default_rng(0)
    stage = Stage([], rng.normal(0, 0.1, 300), True, (3, 10, 10))
    params = LayerParams(neuron=neuron, rate_scale=300.0, channel_voltage=[0.0, 0.5, 0.9])
    for steps, held in ((1, True), (7, True), (7, False), (32, False)):
        currents = torch.as_tensor(rng.normal(0, 3, (1 if held else steps, 50, 300)))
        spikes, mean = correction._fire(currents, steps, stage, params, 0.001, 0, keep=True)
        _, counted = correction._fire(currents, steps, stage, params, 0.001, 0, keep=False)
        np.testing.assert_allclose(counted.numpy(), mean.numpy(), rtol=1e-12)
        series = spikes[:].numpy()  # the output at every step
        np.testing.assert_allclose(series.mean(axis=0), mean.numpy(), rtol=1e-12)
        assert spikes.counts.dtype == torch.uint8 and np.all(series >= 0)
    loud = torch.full((1, 2, 300), 1e5, dtype=torch.float64)  # 300 spikes a step: more than uint8 holds
    spikes, mean = correction._fire(loud, 3, stage, params, 0.001, 0, keep=True)
    assert spikes.counts.dtype == torch.float64 and float(spikes.counts.max()) >= 300
    np.testing.assert_allclose(spikes[:].numpy().mean(axis=0), mean.numpy())


def test_the_simulations_convolutions_equal_the_graphs_ops():
    """Convs run with their pads inside the call where the extra bottom / right pad is never read, padded first
    otherwise: the same outputs as the graph's own ops (strides, groups, dilations, asymmetric pads)."""
    from snnbench.conversion.correction import Ops
    from snnbench.conversion.graph import LinearOp, conv_out_len

    rng = np.random.default_rng(0)
    cases = [((4, 28, 28), (1, 1, 0, 0), (2, 2), 1, (1, 1)), ((4, 9, 9), (0, 0, 1, 1), (2, 2), 1, (1, 1)),
             ((4, 9, 7), (1, 2, 1, 0), (1, 2), 2, (1, 1)), ((4, 10, 10), (2, 2, 2, 2), (1, 1), 4, (2, 2)),
             ((4, 10, 10), (1, 1, 1, 1), (3, 3), 1, (1, 1))]
    for shape, pads, strides, groups, dilations in cases:
        weight = rng.normal(size=(8, 4 // groups, 3, 3))
        size = [conv_out_len(n, 2 * d + 1, s, pads[i], pads[i + 2])
                for i, (n, s, d) in enumerate(zip(shape[1:], strides, dilations))]
        op = LinearOp("conv", shape, (8, *size), weight=weight, kernel=(3, 3), strides=strides, padding="explicit",
                      pads=pads, groups=groups, dilations=dilations)
        x = torch.as_tensor(rng.normal(size=(5, int(np.prod(shape)))))
        np.testing.assert_allclose(Ops(torch.float64)(op, x).numpy(), op.apply(x, with_bias=False).numpy(),
                                   atol=1e-12)


def test_bounded_if_fires_at_most_its_bound_and_converges_to_the_clipped_rate():
    from snnbench.conversion.neurons import SignedIF

    neuron, dt = SignedIF(amplitude=1.0, max_spikes=2), 0.001
    voltage, output, total = np.zeros(3), np.zeros(3), np.zeros(3)
    J = np.array([1500.0, 2500.0, 9000.0])  # 1.5, 2.5 and 9 spikes per step of input
    for _ in range(200):
        neuron.step(dt, J, output, voltage)
        assert (output * dt <= 2).all()
        total += output * dt
    np.testing.assert_allclose(total / 200, [1.5, 2.0, 2.0], atol=0.01)


class _Inputs:
    """What corrected_layers reads: training inputs (calibration) and a validation subset with labels."""

    def __init__(self, train, x_val, y_val):
        self.train, self.x_val, self.y_val = train, x_val, y_val

    def training(self):
        return self.train

    def validation(self, samples, seed):
        return self.x_val[:samples], self.y_val[:samples]


def test_validated_rates_take_per_step_count_the_fewest_spikes_that_keep_the_dnns_validation_accuracy(tmp_path):
    """--rates validated: uniform, then balanced rates, at 1x, 2x, 4x the calibrated rate, the first whose
    corrected network scores within the tolerance of the DNN on validation images (else the best); every
    setting tried is scored by a simulation of its corrected network, and the one kept is that correction."""
    from snnbench.benchmarks.convert_eval import corrected_layers
    from snnbench.conversion.correction import correct, simulate
    from snnbench.conversion.nengo_net import LayerParams

    model, x = _conv_net(tmp_path)
    x_val = x[200:]
    y_val = model.forward(x_val).argmax(axis=1)  # labels the DNN gets right: the DNN's validation accuracy is 1
    calibration = cal.Calibration(samples=200, scales="channel", rates="validated")
    settings = SimpleNamespace(calibration=calibration, sim=SimConfig(steps=2), steps_list=[1, 2, 8],
                               base=LayerParams(), inputs=_Inputs(x[:200], x_val, y_val))  # convert's settings read
    chosen = corrected_layers(model, settings)
    assert sorted(chosen) == [1, 2, 8]
    order = [(r, f) for f in cal.RATE_FACTORS for r in cal.RATES]
    for steps, (layers, _, choice) in chosen.items():
        tried = choice["tried"]
        assert [(t["rates"], t["rate_factor"]) for t in tried] == order[:len(tried)]  # in order, none skipped
        kept = [t for t in tried if t["validation_accuracy"] >= 1.0 - cal.VALIDATION_TOLERANCE]
        assert kept == ([tried[-1]] if kept else [])  # the search stops at the first one within the tolerance
        best = kept[0] if kept else max(tried, key=lambda t: t["validation_accuracy"])
        assert (choice["rates"], choice["rate_factor"]) == (best["rates"], best["rate_factor"])
        assert choice["dnn_validation_accuracy"] == 1.0 and choice["validation_images"] == 200
        for t in tried:
            candidate, _ = cal.calibrate(model, x[:200], replace(calibration, rates=t["rates"]), 0.001)
            candidate = [cal.with_rate_factor(p, t["rate_factor"]) for p in candidate]
            expected, _ = correct(model, candidate, x[:200], steps)
            logits = simulate(model, expected, x_val, steps, dtype=torch.float32)[-1]
            assert t["validation_accuracy"] == pytest.approx(float((logits.argmax(axis=1) == y_val).mean()))
            if t is best:
                assert layers == expected
    assert chosen[1][2]["rate_factor"] > 1.0  # one step: the calibrated rate alone is not enough here
    assert len(chosen[8][2]["tried"]) < len(chosen[1][2]["tried"])  # more steps: fewer spikes per step suffice
    with pytest.raises(SnnbenchError, match="chosen per step count"):
        cal.calibrate(model, x[:200], calibration)
