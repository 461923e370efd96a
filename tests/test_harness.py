"""The evaluation harness: each engine's logits against a reference computation, and the metrics
against hand counts on small networks with known weights."""

import numpy as np
import pytest
import torch
from torch import nn

from snnbench import engines
from snnbench.evaluation import harness

from snnbench.evaluation import metrics
from snnbench.noise import NoiseSpec
from snnbench.models.export import export_onnx


def _wilson(successes, n, z=1.959963984540054):
    """The Wilson score interval written out: centre and half-width of the score test's inversion."""
    p, denominator = successes / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / denominator, z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half


def test_wilson_interval_matches_known_values():
    # p = 0.5, n = 100: the textbook Wilson interval is 0.4038 .. 0.5962
    low, high = metrics.wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    low, high = metrics.wilson_interval(100, 100)  # never past 1, still a real interval below it
    assert high == pytest.approx(1.0) and 0.95 < low < 0.97
    for n in (1, 7, 100, 10000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            np.testing.assert_allclose(metrics.wilson_interval(k, n), _wilson(k, n), rtol=0, atol=1e-12)
    assert np.isnan(metrics.wilson_interval(0, 0)).all()


def test_seed_interval_is_the_t_interval():
    mean, low, high = metrics.seed_interval([0.90, 0.92, 0.94])
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert mean == pytest.approx(0.92) and low == pytest.approx(0.92 - half) and high == pytest.approx(0.92 + half)
    assert np.isnan(metrics.seed_interval([0.9])[1])


def test_accuracy_has_one_definition():
    logits, labels = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), [1, 1, 1]
    assert metrics.correct(logits, labels).tolist() == [True, False, True]
    assert metrics.accuracy(logits, labels) == 2 / 3
    assert metrics.Accuracy()(None, logits, labels, None) == metrics.accuracy_interval(2, 3)
    assert np.isnan(metrics.accuracy(np.zeros((0, 2)), [])) and np.isnan(metrics.accuracy_interval(0, 0)["accuracy"])


def _mlp(seed=0, sparse=True):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    if sparse:
        with torch.no_grad():
            model[0].weight[0, :3] = 0  # known zeros: fan-out and connection sparsity see them
            model[2].weight[:, 4] = 0
    return model.eval()


def _hand_activity(model, x):
    """Nonzero hidden activations and effective MACs counted by hand."""
    w0, w1 = model[0].weight.detach().numpy(), model[2].weight.detach().numpy()
    h = np.maximum(x @ w0.T + model[0].bias.detach().numpy(), 0)
    macs = sum((w0[:, j] != 0).sum() for i in range(len(x)) for j in range(6) if x[i, j] != 0)
    macs += sum((w1[:, j] != 0).sum() for i in range(len(x)) for j in range(5) if h[i, j] != 0)
    return int((h != 0).sum()), float(macs)


def test_dnn_engines_agree_with_torch_and_hand_counts(tmp_path):
    model = _mlp()
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    x[:, 5] = 0  # an input that is never active costs no MACs
    export_onnx(model, 6, tmp_path / "model.onnx")
    reference = model(torch.as_tensor(x)).detach().numpy()
    active, macs = _hand_activity(model, x)
    for engine in (engines.build("ort-dnn", tmp_path / "model.onnx", {"batch_size": 7}),
                   engines.build("torch-dnn", model, {"batch_size": 7})):
        assert np.abs(engine.predict(x) - reference).max() <= 1e-5, engine.engine
        activity = engine.last_activity
        assert (activity.samples, activity.steps, activity.neurons) == (40, 1, 5)
        assert activity.active == active and activity.macs == pytest.approx(macs) and activity.acs == 0
    row = harness.evaluate(engines.build("ort-dnn", tmp_path), x, reference.argmax(1), benchmark="t")
    assert row["accuracy"] == 1.0 and row["n"] == 40
    assert row["parameter_count"] == 6 * 5 + 5 + 5 * 3 + 3
    assert row["connection_sparsity"] == pytest.approx((3 + 3) / (30 + 15))
    assert row["footprint_bytes"] == 4 * row["parameter_count"]
    assert row["activation_sparsity"] == pytest.approx(1 - active / (40 * 5))
    assert set(harness.RESULT_COLUMNS) <= set(harness.result_table([row]).columns)


def test_dnn_engines_see_the_same_noise():
    """ONNX Runtime and torch add the very same draws at every position."""
    model = _mlp(sparse=False)
    x = np.random.default_rng(1).normal(size=(30, 6)).astype(np.float32)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, 6, Path(tmp) / "model.onnx")
        ort_model = engines.build("ort-dnn", Path(tmp) / "model.onnx", {"batch_size": 9})
        torch_model = engines.build("torch-dnn", model, {"batch_size": 4})
        for position in ("input", "pre", "post"):
            spec = NoiseSpec(0.7, position, seed=3)
            noisy = ort_model.predict(x, spec, start=100)
            assert np.abs(noisy - torch_model.predict(x, spec, start=100)).max() <= 1e-5, position
            assert np.abs(noisy - ort_model.predict(x)).max() > 1e-2, position


def test_snntorch_engine_counts_spikes_and_synaptic_operations():
    from snnbench.models.multimodal import ModelSpec, SpikingMLP

    spec = ModelSpec("image", "snn", steps=3)
    torch.manual_seed(0)
    model = SpikingMLP(spec).eval()
    with torch.no_grad():
        model.linears[1].weight[:, :10] = 0  # the first 10 neurons of layer 0 reach nothing
    x = np.random.default_rng(0).uniform(size=(12, spec.n_features)).astype(np.float32)
    x[:, :100] = 0
    engine = engines.build("snntorch-snn", model, {"batch_size": 5})
    logits = engine.predict(x)
    with torch.no_grad():
        trace = model.simulate(torch.as_tensor(x))
    assert np.abs(logits - trace["scores"].numpy()).max() <= 1e-5
    spk0, spk1 = (s.numpy() for s in trace["spk"][:2])
    w1, w2 = model.linears[1].weight.detach().numpy(), model.linears[2].weight.detach().numpy()
    acs = (spk0.sum((0, 1)) * (w1 != 0).sum(0)).sum() + (spk1.sum((0, 1)) * (w2 != 0).sum(0)).sum()
    w0 = model.linears[0].weight.detach().numpy()
    macs = 3 * ((x != 0) @ (w0 != 0).sum(0)).sum()
    a = engine.last_activity
    assert a.spikes == spk0.sum() + spk1.sum() > 0
    assert a.acs == pytest.approx(acs) and a.macs == pytest.approx(macs)
    width = spec.hidden_width
    assert a.membrane_updates == 12 * 3 * (2 * width + 10) and a.neurons == 2 * width
    row = harness.evaluate(engine, x, logits.argmax(1))
    assert 0 < row["activation_sparsity"] < 1 and row["effective_acs_per_sample"] == pytest.approx(acs / 12)


def test_nengo_engine_rate_mode_matches_onnx_runtime(tmp_path):
    from snnbench.conversion.nengo_net import LayerParams, SimConfig

    model = _mlp(sparse=False)
    export_onnx(model, 6, tmp_path / "model.onnx")
    x = np.random.default_rng(2).uniform(size=(20, 6)).astype(np.float32)
    dnn = engines.build("ort-dnn", tmp_path / "model.onnx")
    snn = engines.build("nengo-snn", tmp_path / "model.onnx",
                        {"layers": LayerParams("relu-rate"), "sim": SimConfig(steps=2, readout="last", minibatch=10)})
    try:
        assert np.abs(snn.predict(x) - dnn.predict(x)).max() <= 1e-4
        assert snn.last_activity.samples == 20 and snn.last_activity.neurons == 5
    finally:
        snn.close()


def test_the_registry_builds_each_engine_once_and_refuses_unknown_names(tmp_path):
    from snnbench.conversion.nengo_net import SimConfig
    from snnbench.errors import ConfigError

    model = _mlp(sparse=False)
    export_onnx(model, 6, tmp_path / "model.onnx")
    x = np.random.default_rng(3).uniform(size=(30, 6)).astype(np.float32)
    # the calibrated conversion, set from training inputs, on nengo and on snntorch (snnbench throughput's)
    settings = {"calibration_inputs": x, "seed": 0}
    nengo = engines.build("nengo-snn", tmp_path, {"sim": SimConfig(steps=4, minibatch=10), "counters": False,
                                                  "calibration_inputs": x})
    snntorch = engines.build("snntorch-snn", tmp_path, {**settings, "steps": 4})
    assert snntorch.engine == "snntorch-snn" and snntorch.predict(x).shape == nengo.predict(x).shape == (30, 3)
    assert nengo.last_activity is None  # no counters
    plain = engines.build("ort-dnn", tmp_path, {"activity": False})
    np.testing.assert_allclose(plain.predict(x), model(torch.as_tensor(x)).detach().numpy(), atol=1e-5)
    assert plain.last_activity is None
    nengo.close()
    with pytest.raises(ConfigError, match="unknown engine"):
        engines.build("tpu-snn", tmp_path)


def test_a_callers_own_activity_metric_is_nan_for_a_model_without_activity():
    # New instances are not the ones in metrics.ACTIVITY: the harness must still know they need activity.
    class Fixed(harness.Model):
        engine = "fixed"

        def predict(self, x, noise=harness.CLEAN, start=0):
            return np.eye(3, dtype=np.float32)[np.arange(len(x)) % 3]

    measures = (metrics.Accuracy(), metrics.ActivationSparsity(), metrics.SynapticOperations())
    row = harness.evaluate(Fixed(), np.zeros((6, 2), np.float32), np.array([0, 1, 2, 0, 1, 0]), measures=measures)
    assert row["accuracy"] == pytest.approx(5 / 6)
    assert np.isnan(row["activation_sparsity"]) and np.isnan(row["effective_macs_per_sample"])


def test_paired_difference_is_the_mean_per_sample_difference_with_a_bootstrap_interval():
    rng = np.random.default_rng(0)
    a = rng.random((3, 4000)) < 0.9  # three repeats (seeds) of the same 4,000 samples
    b = a & (rng.random((3, 4000)) < 0.95)  # B misses about 5% of what A gets right, never the reverse
    mean, low, high = metrics.paired_difference(a, b)
    assert mean == pytest.approx(a.mean() - b.mean()) and low < mean < high
    # paired: the interval is far narrower than that of two independent accuracies (about +-0.8 points each)
    assert 0 < low and high - low < 0.01
    assert metrics.paired_difference(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="equal"):
        metrics.paired_difference(a, b[:, :10])
    assert metrics.paired_difference(a[:, :1], ~a[:, :1]) == (1.0, 1.0, 1.0)  # one sample: every resample is it
    # the resamples: batches of 200 rows of sample indices from default_rng(seed), percentiles of their means
    per_sample, rng = (a - b.astype(float)).mean(axis=0), np.random.default_rng(7)
    means = np.concatenate([per_sample[rng.integers(0, 4000, (200, 4000))].mean(axis=1) for _ in range(5)])
    np.testing.assert_allclose(metrics.paired_difference(a, b, resamples=1000, seed=7)[1:],
                               np.percentile(means, [2.5, 97.5]), rtol=0, atol=1e-12)


def test_a_result_rows_key_columns_come_from_its_key_in_the_schemas_order():
    noise = NoiseSpec(0.5, "pre", "frozen", 3)
    key = harness.ResultKey("noise_sweep", engines.NENGO_SNN, "conversion-mlp", "image", "calibrated", 20, noise, 1)
    assert tuple(key.columns()) == harness.KEY_COLUMNS
    assert key.columns() == {"benchmark": "noise_sweep", "engine": "nengo-snn", "model": "conversion-mlp",
                             "modality": "image", "method": "calibrated", "steps": 20, "noise_position": "pre",
                             "noise_std": 0.5, "noise_mode": "frozen", "noise_seed": 3, "seed": 1}
    clean = harness.ResultKey("throughput", engines.ORT_DNN, "conversion-mlp", "image").columns()
    assert (clean["noise_position"], clean["noise_std"], clean["steps"]) == ("none", 0.0, 1)


def test_a_result_row_is_frozen_with_the_schemas_columns_then_its_extras():
    import dataclasses
    import pickle

    key = harness.ResultKey("t", engines.ORT_DNN, "conversion-mlp", "image")
    row = harness.result_row(key, {"n": 10, "accuracy": 0.5, "not_a_metric": 1}, np.ones(10, bool), first=3)
    assert list(row) == [*harness.RESULT_COLUMNS, "first"] and "not_a_metric" not in row
    assert row["accuracy"] == 0.5 and np.isnan(row["footprint_bytes"]) and row.correct.all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.key = key
    with pytest.raises(ValueError, match="key or metric columns"):
        row.with_extras(steps=3)
    wider = row.with_extras(later=1, first=4)
    assert list(wider)[-2:] == ["first", "later"] and wider["first"] == 4 and row["first"] == 3
    assert list(harness.result_table([row, wider]).columns) == [*harness.RESULT_COLUMNS, "first", "later"]
    copy = pickle.loads(pickle.dumps(wider))  # as a worker sends it back
    assert copy.key == key and copy.extras == wider.extras and copy.correct.all()
    np.testing.assert_array_equal(copy.figures, wider.figures)
    with pytest.raises(TypeError, match="ResultRow"):
        harness.result_table([dict(row)])


def test_a_curve_scores_each_step_count_of_one_simulation(tmp_path):
    from snnbench.conversion.nengo_net import LayerParams, SimConfig
    from snnbench.errors import ConfigError

    model = _mlp(sparse=False)
    export_onnx(model, 6, tmp_path / "model.onnx")
    x = np.random.default_rng(4).uniform(size=(20, 6)).astype(np.float32)
    y = np.arange(20) % 3
    with engines.build("nengo-snn", tmp_path / "model.onnx",
                       {"layers": LayerParams("relu-rate"), "sim": SimConfig(steps=4, minibatch=10)}) as snn:
        curve = harness.evaluate_curve(snn, x, y, [2, 4], benchmark="t", model="mlp")  # a key's model: its name
        assert sorted(curve.rows) == [2, 4] and curve.seconds > 0
        np.testing.assert_allclose(curve.logits[4], snn.predict(x), atol=1e-6)
        for steps, row in curve.rows.items():
            assert row["steps"] == steps and row["engine"] == engines.NENGO_SNN and row["model"] == "mlp"
            assert row["accuracy"] == metrics.accuracy(curve.logits[steps], y)
        # the activity was measured over the model's 4 steps: that row's alone
        assert np.isnan(curve.rows[2]["activation_sparsity"]) and 0 <= curve.rows[4]["activation_sparsity"] <= 1
        assert snn.last_activity.details["spikes_per_sample"] == snn.last_activity.spikes / 20
    dnn = engines.build("ort-dnn", tmp_path / "model.onnx")
    np.testing.assert_array_equal(dnn.predict_curve(x, [1])[1], dnn.predict(x))
    with pytest.raises(ConfigError, match="after 1 steps only"):
        dnn.predict_curve(x, [2, 4])
