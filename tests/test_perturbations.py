"""The perturbation registry: every family's draw is the same for every engine (keyed by the sample's
index or the weight's name and the seed), weight faults are exact in ONNX Runtime and the converter (rate
mode reproduces the perturbed DNN's logits), families refuse what they have no meaning for, and the noise
sweep runs two families end to end."""

import numpy as np
import onnx
import pytest
import torch
from mlflow.tracking import MlflowClient
from onnx import numpy_helper
from torch import nn

from conftest import require_data
from snnbench import engines, perturbations
from snnbench.cli.main import main
from snnbench.conversion.converted_files import load_any
from snnbench.errors import ConfigError, DataError, UnsupportedModelError
from snnbench.models.export import export_onnx
from snnbench.noise import NoiseSpec
from snnbench.perturbations import Target
from snnbench.perturbations.audio import AudioCorruption
from snnbench.perturbations.images import ImageCorruption
from snnbench.perturbations.neuron_faults import NeuronFault, neuron_layers, thresholds
from snnbench.perturbations.weight_faults import weight_tensors

INPUT_FAMILIES = [n for n in perturbations.names() if isinstance(perturbations.build(n), ImageCorruption)]
AUDIO_FAMILIES = [n for n in perturbations.names() if isinstance(perturbations.build(n), AudioCorruption)]
WEIGHT_FAMILIES = [n for n in perturbations.names() if perturbations.build(n).kind == "weights"]
NEURON_WEIGHT_FAMILIES = [n for n in perturbations.names() if isinstance(perturbations.build(n), NeuronFault)]


def _digits(n: int = 12, seed: int = 0) -> np.ndarray:
    """Digit-like images: a bright blob on black, flat (n, 784) in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.float32)
    for i in range(n):
        r, c = rng.integers(8, 20, size=2)
        x[i, r - 5:r + 5, c - 2:c + 2] = rng.uniform(0.6, 1.0)
    return x.reshape(n, -1)


def test_every_family_is_registered_with_levels_and_refuses_a_bad_level():
    assert len(INPUT_FAMILIES) == 15 and set(WEIGHT_FAMILIES) == {"quantise", "quantise_channel", "weight_noise",
                                                                 "stuck_at_zero", "dead_neurons"}
    assert set(AUDIO_FAMILIES) == {"snr_noise", "time_shift", "time_mask", "freq_mask"}
    assert set(NEURON_WEIGHT_FAMILIES) == {"saturated_neurons", "threshold_variation"}
    for name in perturbations.names():
        family = perturbations.build(name)
        assert family.name == name and family.levels and set(family.quick) <= set(family.levels)
    with pytest.raises(ConfigError, match="severity 7"):
        perturbations.build("rotate", levels=(1, 7))
    with pytest.raises(ConfigError, match="bits 1"):
        perturbations.build("quantise", levels=(1,))
    with pytest.raises(ConfigError, match="unknown perturbation 'blur'"):
        perturbations.build("blur")


def test_the_gaussian_family_is_the_sweeps_noise_spec():
    family = perturbations.build("gaussian")
    assert family.spec(0.5, "pre", 3) == NoiseSpec(0.5, "pre", "frozen", 3)
    with pytest.raises(ConfigError):
        perturbations.build("gaussian", positions=("inside",))


@pytest.mark.parametrize("name", INPUT_FAMILIES)
def test_an_input_corruption_is_keyed_by_the_samples_index_and_the_seed(name):
    family, x = perturbations.build(name), _digits()
    level = family.levels[-1]
    whole = family.apply(x, (1, 28, 28), level, seed=4)
    assert whole.shape == x.shape and whole.dtype == np.float32 and 0 <= whole.min() and whole.max() <= 1
    assert not np.array_equal(whole, x)
    # any batch layout gets the same corrupted sample: keyed by its global index, not its place in the batch
    np.testing.assert_array_equal(family.apply(x[5:9], (28, 28), level, seed=4, start=5), whole[5:9])
    np.testing.assert_array_equal(family.apply(x, (1, 28, 28), level, seed=4), whole)
    if name not in ("brightness", "stripe", "scale", "canny_edges"):  # the others draw at random
        assert not np.array_equal(family.apply(x, (1, 28, 28), level, seed=5), whole)


def test_an_image_corruption_refuses_data_that_is_not_a_28x28_grey_image():
    family = perturbations.build("shot_noise")
    with pytest.raises(DataError, match=r"28x28 grey images.*audio's samples have shape \(1984,\)"):
        family.check(Target("ort-dnn", (1984,), "audio"))
    with pytest.raises(DataError, match=r"\(3, 28, 28\)"):
        family.apply(np.zeros((2, 3, 28, 28)), (3, 28, 28), 1, 0)
    with pytest.raises(UnsupportedModelError, match="not to engine snntorch-snn"):
        perturbations.build("dead_neurons").check(Target("snntorch-snn", (1, 28, 28), "image"))


def _mlp(path):
    torch.manual_seed(0)
    return export_onnx(nn.Sequential(nn.Linear(784, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(),
                                     nn.Linear(32, 10)).eval(), 784, path)


def _cnn(path):
    torch.manual_seed(1)
    return export_onnx(nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(6 * 6 * 6, 10)).eval(), (1, 28, 28), path)


@pytest.mark.parametrize("build_model", [_mlp, _cnn])
@pytest.mark.parametrize("name", WEIGHT_FAMILIES)
def test_a_weight_fault_is_the_same_in_onnx_runtime_and_the_converted_network(tmp_path, build_model, name):
    source = build_model(tmp_path / "model.onnx")
    x = _digits(40)
    family = perturbations.build(name)
    clean = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(source)).graph.initializer}
    for level in (family.levels[1], family.levels[-1]):
        faulty = family.apply(source, tmp_path / f"{level}" / "model.onnx", level, seed=2)
        # like with like: the converted network in rate mode reproduces ONNX Runtime on the perturbed file
        converted = load_any(faulty)
        images = x.reshape(len(x), *converted.input_shape)
        reference = engines.build("ort-dnn", faulty, {"activity": False}).predict(images)
        np.testing.assert_allclose(converted.forward(x), reference, atol=1e-4)
        # keyed: the same file again for the same seed, another for another seed (the random families)
        again = family.apply(source, tmp_path / "again.onnx", level, seed=2)
        weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(faulty)).graph.initializer}
        for t in onnx.load(str(again)).graph.initializer:
            np.testing.assert_array_equal(numpy_helper.to_array(t), weights[t.name])
        model = onnx.load(str(faulty))
        changed = [t for t in weight_tensors(model) if not np.array_equal(weights[t.name], clean[t.name])]
        assert changed and all(np.array_equal(weights[n], clean[n]) for n in clean
                               if n not in {t.name for t in weight_tensors(model)})  # biases untouched
        if name == "dead_neurons":  # whole input units of each layer a ReLU feeds, the first layer untouched
            for t in weight_tensors(model):
                dead = np.all(weights[t.name] == 0, axis=tuple(a for a in range(weights[t.name].ndim)
                                                               if a != t.in_axis))
                units = weights[t.name].shape[t.in_axis]
                assert dead.sum() == (round(level * units) if t.hidden_input else 0)
        if name == "stuck_at_zero":
            for t in weight_tensors(model):
                assert (weights[t.name] == 0).sum() == round(level * clean[t.name].size)
        if name == "quantise":
            for t in weight_tensors(model):
                assert len(np.unique(weights[t.name])) <= 2 ** level - 1


@pytest.mark.slow
def test_the_sweep_runs_two_families_on_every_engine_that_takes_them(tracking_store):
    require_data()
    tiny = ["--test-limit", "60", "--train-limit", "300", "--epochs", "1", "--steps", "6", "--snn-steps", "3"]
    assert main(["noise_sweep", "--modalities", "image", "--perturbations", "rotate,stuck_at_zero", *tiny]) == 0
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("noise_sweep").experiment_id
    runs = client.search_runs([experiment])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    seen = {(c.data.tags["engine"], c.data.tags["model"], c.data.tags["perturbation"], c.data.tags["level"])
            for c in children}
    for model in ("conversion-mlp", "multimodal"):
        for engine in ("ort-dnn", "nengo-snn"):
            assert {(engine, model, "rotate", "2"), (engine, model, "stuck_at_zero", "0.1"),
                    (engine, model, "none", "0")} <= seen
    assert ("snntorch-snn", "multimodal", "rotate", "2") in seen
    assert not any(e == "snntorch-snn" and p == "stuck_at_zero" for e, _, p, _ in seen)  # refused, and said so
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"perturbation_cells.json", "perturbation_gaps.json", "perturbation_summary.json",
            "perturbations_refused.txt", "results.json"} <= artifacts
    assert "noise_sweep.md" not in artifacts  # no Gaussian noise asked for: no noise tables
    refused = client.download_artifacts(parent.info.run_id, "perturbations_refused.txt")
    assert "stuck_at_zero on snntorch-snn/multimodal/image" in open(refused).read()
    assert {"mce_vs_dnn.input.nengo-snn", "mean_drop_pp.weights.nengo-snn"} <= set(parent.data.metrics)


@pytest.mark.parametrize("build_model", [_mlp, _cnn])
@pytest.mark.parametrize("name", NEURON_WEIGHT_FAMILIES)
def test_a_neuron_fault_is_the_same_in_onnx_runtime_and_the_converted_network(tmp_path, build_model, name):
    source = build_model(tmp_path / "model.onnx")
    x, family = _digits(40), perturbations.build(name)
    images = x.reshape(len(x), *load_any(source).input_shape)
    clean = engines.build("ort-dnn", source, {"activity": False}).predict(images)
    for level in family.levels[-2:]:  # a convolution's 4 and 6 channels: at least one faulty unit
        faulty = family.apply(source, tmp_path / f"{level}" / "model.onnx", level, seed=2, inputs=x)
        reference = engines.build("ort-dnn", faulty, {"activity": False}).predict(images)
        assert not np.allclose(reference, clean, atol=1e-3)
        # like with like: the converted network in rate mode reproduces ONNX Runtime on the faulty file
        np.testing.assert_allclose(load_any(faulty).forward(x), reference, atol=1e-4)
        again = family.apply(source, tmp_path / "again.onnx", level, seed=2, inputs=x)
        np.testing.assert_array_equal(engines.build("ort-dnn", again, {"activity": False}).predict(images), reference)


def _relu_outputs(onnx_file, x):
    model = onnx.load(str(onnx_file))
    layers = neuron_layers(model)
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(layer.activation) for layer in layers)
    from snnbench.engines.ort import OrtRunner

    return OrtRunner(model.SerializeToString()).predict_outputs(x)


def test_saturated_neurons_are_stuck_at_the_layers_largest_activation_the_same_units_in_every_engine(tmp_path):
    from snnbench.models.multimodal import ModelSpec, build_model

    snn = build_model(ModelSpec("image", "snn", steps=5))
    sizes = snn.spec.layer_sizes  # a DNN of the SNN's widths, in ONNX
    torch.manual_seed(0)
    dnn = nn.Sequential(*[m for a, b in zip(sizes[:-2], sizes[1:-1]) for m in (nn.Linear(a, b), nn.ReLU())],
                        nn.Linear(*sizes[-2:])).eval()
    source, x = export_onnx(dnn, 784, tmp_path / "model.onnx"), _digits(40)
    family = perturbations.build("saturated_neurons")
    peaks = [out.max() for out in _relu_outputs(source, x)]
    outputs = _relu_outputs(family.apply(source, tmp_path / "s.onnx", 0.2, seed=3, inputs=x), _digits(7, seed=9))
    stuck_onnx = []
    for out, peak, width in zip(outputs, peaks, sizes[1:-1]):
        stuck = np.flatnonzero(np.all(out == np.float32(peak), axis=0))
        assert len(stuck) == round(0.2 * width)
        stuck_onnx.append(stuck)
    # the snntorch SNN: the same neurons, firing at every step whatever the input
    spikes = family.perturb_module(snn, 0.2, seed=3).simulate(torch.as_tensor(_digits(7, seed=9)))["spk"]
    for layer, stuck in zip(spikes[:-1], stuck_onnx):
        assert set(stuck) <= set(np.flatnonzero(layer.detach().numpy().min(axis=(0, 1)) == 1))
    with pytest.raises(ConfigError, match="training inputs"):
        family.apply(source, tmp_path / "t.onnx", 0.2, seed=3)


def test_threshold_variation_divides_each_neurons_gain_by_its_keyed_threshold(tmp_path):
    source, x = _mlp(tmp_path / "model.onnx"), _digits(20)
    family = perturbations.build("threshold_variation")
    faulty = family.apply(source, tmp_path / "t.onnx", 0.5, seed=4)
    # a ReLU unit of gain 1 / t: each hidden activation divided by its neuron's threshold (the first layer's
    # input is unchanged, so its activations are exactly those divided)
    clean_first, faulty_first = _relu_outputs(source, x)[0], _relu_outputs(faulty, x)[0]
    t = thresholds(48, "layer0", 0.5, 4)
    np.testing.assert_allclose(faulty_first, clean_first / t, rtol=1e-5, atol=1e-6)
    assert t.min() >= 0.1 and not np.allclose(t, 1)
    assert not np.allclose(thresholds(48, "layer0", 0.5, 5), t)


def test_spike_deletion_drops_spikes_in_the_snn_and_refuses_a_dnn_in_one_line():
    from snnbench.models.multimodal import ModelSpec, build_model

    family = perturbations.build("spike_deletion")
    torch.manual_seed(0)
    snn = build_model(ModelSpec("image", "snn", steps=10)).eval()
    x = torch.as_tensor(_digits(30))
    clean = snn.simulate(x)["spk"][0]
    kept = family.perturb_module(snn, 0.5, seed=1).simulate(x)["spk"][0]
    assert float(kept.sum()) == pytest.approx(0.5 * float(clean.sum()), rel=0.1)
    assert torch.all(kept <= clean)  # only spikes that were fired are lost; the neurons fire as before
    assert torch.equal(family.perturb_module(snn, 0.0, seed=1).simulate(x)["spk"][0], clean)
    with pytest.raises(UnsupportedModelError, match="no DNN counterpart"):
        family.check(Target("ort-dnn", (784,), "image"))
    family.check(Target("loihi-emulator", (784,), "image"))
    with pytest.raises(UnsupportedModelError, match="a setting of nengo-snn, loihi-emulator, not of snntorch-snn"):
        family.engine_settings("snntorch-snn", 0.5, seed=1)


@pytest.mark.parametrize("simulator", ["nengo_dl", "nengo"])
def test_spike_deletion_in_the_converted_networks_if_neurons(tmp_path, simulator):
    from snnbench.conversion.nengo_net import SimConfig

    source, x = _mlp(tmp_path / "model.onnx"), _digits(10)
    sim = SimConfig(steps=10, simulator=simulator, minibatch=10)
    settings = perturbations.build("spike_deletion").engine_settings("nengo-snn", 0.5, seed=1)

    def run(**more):
        model = engines.build("nengo-snn", source, dict(sim=sim, calibration_inputs=x, **more))
        return model.predict(x), model.last_activity.spikes

    clean, clean_spikes = run()
    lossy, lossy_spikes = run(**settings)
    assert 0.2 * clean_spikes < lossy_spikes < 0.7 * clean_spikes and not np.allclose(lossy, clean)
    np.testing.assert_array_equal(run(**settings)[0], lossy)  # the same draws for the same seed
    np.testing.assert_array_equal(run(spike_loss=(0.0, 5))[0], clean)
    assert run(spike_loss=(1.0, 5))[1] == 0


def test_spike_deletion_on_the_loihi_emulators_hidden_compartments(tmp_path):
    """A CNN whose first layer spans several blocks of compartments: p = 0 is the clean chip; the first
    hidden layer's input is the clean one, so its neurons fire as in the clean run (they reset as if each
    spike went out) and the kept spikes are a Binomial(clean spikes, 1 - p); p = 1 leaves the output only
    its bias; the draws are the seed's."""
    from scipy import stats

    from snnbench.conversion.nengo_net import SimConfig

    source, x = _cnn(tmp_path / "model.onnx"), _digits(10)
    family = perturbations.build("spike_deletion")

    def run(**more):
        model = engines.build("loihi-emulator", source, dict(sim=SimConfig(steps=10), calibration_inputs=x, **more))
        logits = model.predict(x)
        first = model._emulator.compartment.spike_count[model._lost.layers[0]].copy() if model._lost else None
        return logits, model.last_layer_spikes, first, model

    clean, clean_spikes, _, chip = run()
    assert len(clean_spikes) == 3 and min(clean_spikes) > 1000  # the input layer, then two hidden layers
    assert len(chip._simulator.model.objs[chip._net.ensembles[1].neurons]["out"]) > 1  # split into blocks
    zero, zero_spikes, _, _ = run(spike_loss=(0.0, 5))
    np.testing.assert_array_equal(zero, clean)
    assert zero_spikes == clean_spikes
    settings = family.engine_settings("loihi-emulator", 0.5, seed=1)
    half, half_spikes, fired, _ = run(**settings)
    assert fired.sum() == clean_spikes[1]  # the first hidden layer fired every spike of the clean run
    assert half_spikes[0] == clean_spikes[0]  # the off-chip input layer keeps its spikes
    low, high = stats.binom.interval(0.999, int(clean_spikes[1]), 0.5)
    assert low <= half_spikes[1] <= high, (half_spikes, clean_spikes)
    assert half_spikes[2] < clean_spikes[2]
    np.testing.assert_array_equal(run(**settings)[0], half)  # the same draws for the same seed
    assert not np.allclose(run(**family.engine_settings("loihi-emulator", 0.5, seed=2))[0], half)
    assert settings != family.engine_settings("nengo-snn", 0.5, seed=1)  # each engine's own draws
    silent, silent_spikes, _, chip = run(spike_loss=(1.0, 5))
    assert silent_spikes == [clean_spikes[0], 0.0, 0.0]
    np.testing.assert_allclose(silent, np.broadcast_to(chip.chip.stages[-1].bias, silent.shape), rtol=1e-6)
    with pytest.raises(ConfigError, match="probability from 0 to 1"):
        engines.build("loihi-emulator", source, dict(calibration_inputs=x, spike_loss=(1.5, 0)))


@pytest.mark.parametrize("name", AUDIO_FAMILIES)
def test_an_audio_corruption_is_keyed_by_the_samples_index_and_acts_on_the_audio_part_only(name, tmp_path):
    require_data()
    from snnbench.data import feature_size
    from snnbench.training.suite import test_data

    family = perturbations.build(name)
    audio = test_data("audio", 12)
    level = family.levels[-1]
    whole = family.apply(audio.x, (feature_size("audio"),), level, seed=4)
    assert whole.shape == audio.x.shape and whole.dtype == np.float32 and 0 <= whole.min() and whole.max() <= 1
    assert not np.array_equal(whole, audio.x)
    np.testing.assert_array_equal(family.apply(audio.x[5:9], (feature_size("audio"),), level, 4, start=5),
                                  whole[5:9])
    assert not np.array_equal(family.apply(audio.x, (feature_size("audio"),), level, seed=5), whole)
    # like with like: the converted network in rate mode reproduces ONNX Runtime on the corrupted samples
    torch.manual_seed(2)
    source = export_onnx(nn.Sequential(nn.Linear(feature_size("audio"), 32), nn.ReLU(), nn.Linear(32, 10)).eval(),
                         feature_size("audio"), tmp_path / "audio.onnx")
    np.testing.assert_allclose(load_any(source).forward(whole),
                               engines.build("ort-dnn", source, {"activity": False}).predict(whole), atol=1e-4)
    fused = test_data("multimodal", 6)
    corrupted = family.apply(fused.x, (feature_size("multimodal"),), level, seed=4)
    np.testing.assert_array_equal(corrupted[:, :784], fused.x[:, :784])  # the image is untouched
    assert not np.array_equal(corrupted[:, 784:], fused.x[:, 784:])
    with pytest.raises(DataError, match=r"FSDD spectrograms.*image's samples have shape \(1, 28, 28\)"):
        family.check(Target("ort-dnn", (1, 28, 28), "image"))


def test_the_waveform_corruptions_change_the_recording_not_its_spectrogram():
    require_data()
    from snnbench.data import feature_size
    from snnbench.data.fsdd import SpectrogramConfig, spectrogram
    from snnbench.perturbations.audio import waveform
    from snnbench.training.suite import test_data

    audio = test_data("audio", 3)
    wave = waveform(audio.x[0])
    np.testing.assert_array_equal(spectrogram(wave, SpectrogramConfig()).reshape(-1), audio.x[0])
    shifted = perturbations.build("time_shift").apply(audio.x[:1], (feature_size("audio"),), 0.25, seed=0)
    frames = SpectrogramConfig().shape[1]
    # 0.25 s is 2,000 samples, 15.6 hops of 128: the spectrogram moves by about 16 frames
    energy = [np.argmax(np.convolve(s.reshape(SpectrogramConfig().shape).sum(0), np.ones(5), "same"))
              for s in (audio.x[0], shifted[0])]
    assert 12 <= abs(energy[1] - energy[0]) <= 20 and frames == 61
    with pytest.raises(DataError, match="no FSDD recording"):
        perturbations.build("snr_noise").apply(np.full((1, feature_size("audio")), 0.5, np.float32),
                                               (feature_size("audio"),), 10, seed=0)


def test_the_sweeps_fault_children_come_after_those_that_run_the_subjects_own_model():
    from snnbench.benchmarks import noise_sweep_perturbations as perturbed
    from snnbench.benchmarks.noise_sweep_models import Subject, SweepSettings

    config = SweepSettings(perturbations=["gaussian", "dead_neurons", "rotate", "saturated_neurons", "shot_noise"],
                           profile="quick", seed=0, seeds=1, test_limit=10)
    kids = perturbed.children(Subject("nengo-snn", "conversion-mlp", "image"), config, {})
    # the subject's own model serves every corruption before the faults build theirs
    assert [c["perturbation"] for c in kids] == ["rotate", "shot_noise", "dead_neurons", "saturated_neurons"]


@pytest.mark.slow
def test_the_sweep_runs_neuron_faults_and_audio_corruptions_on_every_engine_that_takes_them(tracking_store):
    require_data()
    tiny = ["--test-limit", "40", "--train-limit", "300", "--epochs", "1", "--steps", "6", "--snn-steps", "3"]
    assert main(["noise_sweep", "--modalities", "audio", "--perturbations",
                 "saturated_neurons,spike_deletion,time_mask,snr_noise", *tiny]) == 0
    client = MlflowClient(tracking_store)
    runs = client.search_runs([client.get_experiment_by_name("noise_sweep").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    seen = {(r.data.tags["engine"], r.data.tags["perturbation"]) for r in runs if "mlflow.parentRunId" in r.data.tags}
    for engine in ("ort-dnn", "nengo-snn", "snntorch-snn"):
        assert {(engine, "saturated_neurons"), (engine, "time_mask"), (engine, "snr_noise")} <= seen
    assert {("nengo-snn", "spike_deletion"), ("snntorch-snn", "spike_deletion")} <= seen
    assert ("ort-dnn", "spike_deletion") not in seen
    refused = open(client.download_artifacts(parent.info.run_id, "perturbations_refused.txt")).read()
    assert "spike_deletion on ort-dnn/multimodal/audio: perturbation spike_deletion deletes spikes" in refused
    assert {"mean_drop_pp.neurons.nengo-snn", "mce_vs_dnn.input.snntorch-snn"} <= set(parent.data.metrics)



@pytest.mark.slow
def test_the_sweep_deletes_spikes_on_nengo_and_the_loihi_emulator(tracking_store):
    require_data()
    tiny = ["--test-limit", "20", "--train-limit", "300", "--epochs", "1", "--steps", "6", "--snn-steps", "3"]
    assert main(["noise_sweep", "--modalities", "image", "--perturbations", "spike_deletion", "--families",
                 "nengo-snn,loihi-emulator", *tiny]) == 0
    client = MlflowClient(tracking_store)
    runs = client.search_runs([client.get_experiment_by_name("noise_sweep").experiment_id])
    seen = {(r.data.tags["engine"], r.data.tags["model"], r.data.tags["perturbation"], r.data.tags["level"])
            for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert seen == {(engine, model, perturbation, level) for engine in ("nengo-snn", "loihi-emulator")
                    for model in ("conversion-mlp", "multimodal")
                    for perturbation, level in (("none", "0"), ("spike_deletion", "0.2"))}

def test_a_neuron_fault_refuses_a_relu_whose_layer_has_no_weights_and_bias_to_change(tmp_path):
    from onnx import TensorProto, helper

    weights = [numpy_helper.from_array(np.ones((4, 3), np.float32), "w0"),
               numpy_helper.from_array(np.ones((3, 2), np.float32), "w1")]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
                               helper.make_node("MatMul", ["a", "w1"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], weights)
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedModelError, match="ReLU 'a' is fed by MatMul"):
        perturbations.build("threshold_variation").neuron_layers(tmp_path / "m.onnx")
