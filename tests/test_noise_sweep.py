"""noise_sweep: robustness metrics, same noise for every family, std 0 = clean, resumable grid."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from snnbench.evaluation import robustness

from snnbench.tracking import runs as tracking
from snnbench.benchmarks import noise_sweep
from snnbench.benchmarks.noise_sweep_models import SweepSettings
from snnbench.cli.main import main
from conftest import require_data, suite_logits

TINY = ["--test-limit", "60", "--train-limit", "300", "--epochs", "1", "--steps", "6", "--snn-steps", "3"]


def _children(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(noise_sweep.BENCHMARK)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


# --------------------------------------------------------------------------- metrics

def test_robustness_metrics_on_a_known_curve():
    curve = robustness.Curve.from_points([2.0, 0.0, 1.0], [0.5, 0.9, 0.8], clean_accuracy=0.9)
    summary = robustness.summarise(curve)
    assert summary["auc"] == pytest.approx((0.85 + 0.65) / 2)
    assert summary["drop_at_max_std_pp"] == pytest.approx(40.0)
    assert summary["mean_drop_pp"] == pytest.approx(100 * (0 + 0.1 + 0.4) / 3)
    assert robustness.NoiseTolerance(10.0)(curve) == 1.0
    assert robustness.NoiseTolerance(5.0)(curve) == 0.0
    with pytest.raises(Exception, match="one accuracy per noise std"):
        robustness.Curve.from_points([0.0, 1.0], [0.5], 0.5)


def test_grid_has_one_clean_run_and_every_noisy_configuration():
    config = SweepSettings(families=["ort-dnn", "nengo-snn", "snntorch-snn"], modalities=["image", "audio"],
                           positions=["pre", "post"], stds=[0.0, 1.0, 5.0], seeds=2, noise_mode="frozen", seed=3)
    subjects = noise_sweep.subjects(config)
    assert [s.label for s in subjects] == [
        "ort-dnn/conversion-mlp/image", "ort-dnn/multimodal/image", "ort-dnn/multimodal/audio",
        "nengo-snn/conversion-mlp/image", "nengo-snn/multimodal/image", "nengo-snn/multimodal/audio",
        "snntorch-snn/multimodal/image", "snntorch-snn/multimodal/audio"]
    grid = noise_sweep.grid(subjects[0], config)
    assert len(grid) == 1 + 2 * 3 * 2 and grid[0]["position"] == "none"
    assert len({tracking.config_key(c) for c in grid}) == len(grid)
    assert {c["noise_seed"] for c in grid[1:]} == {3, 4}


def test_bad_options_fail_in_one_line(tracking_store, capsys):
    assert main(["noise_sweep", "--stds", "0,-1"]) == 2
    assert main(["noise_sweep", "--test-limit", "-3"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "--stds" in errors[0] and "--test-limit" in errors[1]
    assert MlflowClient(tracking_store).get_experiment_by_name(noise_sweep.BENCHMARK) is None


# --------------------------------------------------------------------------- same noise everywhere

def test_frozen_snn_noise_equals_the_ort_feeds(monkeypatch, tmp_path):
    """Frozen mode: at every step the snntorch SNN receives exactly the DNN's ORT noise feeds, and
    the ORT graph with noise gives the suite's own noisy torch DNN logits."""
    import onnxruntime as ort
    from snnbench.models import multimodal
    from snnbench.noise import NoiseSpec
    from snnbench.models.export import export_onnx
    from snnbench.conversion.onnx_noise import add_noise
    from snnbench.models.spiking import NoiseDraws

    spec = NoiseSpec(0.5, "pre", "frozen", seed=11)
    dnn = multimodal.build_model(multimodal.ModelSpec("image", "dnn", "S/3")).eval()
    snn = multimodal.build_model(multimodal.ModelSpec("image", "snn", "S/3", steps=3)).eval()
    graph = add_noise(export_onnx(dnn, 784, tmp_path / "model.onnx"), "pre")
    feeds = graph.feeds(spec)
    x = np.random.default_rng(0).random((250, 784), dtype=np.float32)

    received, real_add = [], NoiseDraws.add

    def recording_add(self, tensor, position, layer, start, step):
        noisy = real_add(self, tensor, position, layer, start, step)
        if self.spec.applies_to(position):  # the draw it added, as it added it
            key = (self.spec.seed, layer, self.spec.step(step), start, *tensor.shape[-2:])
            received.append((layer, start, step, (self.cache[key] * self.spec.std).numpy()))
        return noisy

    monkeypatch.setattr(NoiseDraws, "add", recording_add)
    suite_logits(snn, x, spec, batch_size=100)
    monkeypatch.undo()
    assert {(layer, step) for layer, _, step, _ in received} == {(f"layer{i}", t) for i in (0, 1) for t in range(3)}
    for layer, start, step, draw in received:
        np.testing.assert_array_equal(draw, feeds(start, len(draw))[f"noise_{layer}"])

    ort_logits = ort.InferenceSession(graph.serialized()).run(None, {"input": x, **feeds(0, len(x))})[0]
    np.testing.assert_allclose(ort_logits, suite_logits(dnn, x, spec), atol=1e-4)


def test_nengo_gets_the_ort_feeds_and_reused_simulators_match_fresh_ones(monkeypatch, tmp_path):
    """Frozen mode: the converted Nengo SNN is fed the DNN's ORT noise feeds at every step; the
    sweep's per-position simulators give what a fresh NengoRunner per noise spec gives; std 0 = clean."""
    import torch
    from snnbench.benchmarks.noise_sweep_models import converted_model
    from snnbench.noise import NoiseSpec
    from snnbench.models.export import export_onnx
    from snnbench.conversion.onnx_noise import add_noise
    from snnbench.conversion.calibration import Calibration, calibrate
    from snnbench.conversion.onnx_ops import extract
    from snnbench.engines.nengo import NengoRunner, SimConfig

    torch.manual_seed(0)
    dnn = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    export_onnx(dnn, 20, tmp_path / "model.onnx")
    x = np.random.default_rng(0).random((120, 20), dtype=np.float32)
    config = SweepSettings(steps=4, seed=0)
    predict = converted_model("nengo-snn", tmp_path, config, training_inputs=x).predict

    spec = NoiseSpec(0.5, "post", "frozen", seed=2)
    feeds = add_noise(tmp_path / "model.onnx", "post").feeds(spec)
    received, real_draw = [], NoiseSpec.draw

    def recording_draw(self, layer, start, n, features, step=0):
        received.append((layer, start, real_draw(self, layer, start, n, features, step)))
        return received[-1][-1]

    monkeypatch.setattr(NoiseSpec, "draw", recording_draw)
    predict(x, spec)
    monkeypatch.undo()
    assert {layer for layer, _, _ in received} == {"layer0"}  # drawn per chunk of samples, every sample once
    assert sorted(start for _, start, _ in received) == list(np.cumsum([0] + [len(d) for *_, d in received])[:-1])
    assert sum(len(draw) for *_, draw in received) == len(x)
    for layer, start, draw in received:
        np.testing.assert_array_equal(draw, feeds(start, len(draw))[f"noise_{layer}"])

    layers, _ = calibrate(extract(tmp_path / "model.onnx"), x, Calibration(seed=config.seed))  # the calibrated method

    def fresh(s):
        sim = SimConfig(steps=config.steps, seed=config.seed)
        return NengoRunner(tmp_path, layers, sim, s, counters=False).predict(x)

    clean = predict(x, NoiseSpec())
    for s in (NoiseSpec(0.0, "pre"), NoiseSpec(1.0, "pre", seed=1), NoiseSpec(2.0, "pre", seed=1),
              NoiseSpec(1.0, "post", "per_step", seed=2), NoiseSpec(1.0, "input", seed=3)):
        np.testing.assert_array_equal(predict(x, s), fresh(s))
    np.testing.assert_array_equal(predict(x, NoiseSpec(0.0, "post")), clean)


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_sweep_std0_equals_clean_for_every_family(tracking_store):
    require_data()
    assert main(["noise_sweep", "--modalities", "image", "--stds", "0,2", "--positions", "input,post", *TINY]) == 0
    children = _children(tracking_store)
    families = {r.data.params["family"] for r in children}
    assert families == {"ort-dnn", "nengo-snn", "snntorch-snn"}
    for run in children:
        if float(run.data.params["std"]) == 0:
            assert run.data.metrics["accuracy"] == run.data.metrics["clean_accuracy"], run.info.run_name
    parent = MlflowClient(tracking_store).get_run(children[0].data.tags["mlflow.parentRunId"])
    artifacts = {a.path for a in MlflowClient(tracking_store).list_artifacts(parent.info.run_id)}
    assert {"noise_sweep.csv", "accuracy_vs_std.png", "robustness.json"} <= artifacts
    models = MlflowClient(tracking_store).search_logged_models([parent.info.experiment_id])
    assert {m.name for m in models if m.source_run_id == parent.info.run_id} == {"conversion-mlp", "multimodal-dnn-image",
                                                                                "multimodal-snn-image"}
    # a few summary metrics on the parent; the rest in its tables
    assert {"clean_accuracy.nengo-snn", "mean_auc.nengo-snn", "mean_gap_pp.ort-dnn-vs-nengo-snn"} <= set(parent.data.metrics)
    assert len(parent.data.metrics) < 20
    assert {"noise_cells.json", "paired_gaps.json", "noise_sweep.md"} <= artifacts
    for child in children:  # the fields a user groups by in the UI, and std as a number
        assert {"engine", "model", "modality", "position"} <= set(child.data.tags)
        assert child.data.tags["mlflow.runColor"] == noise_sweep.ENGINE_COLORS[child.data.tags["engine"]]
        assert child.data.metrics["noise_std"] == float(child.data.params["std"])
    # one fixed-schema table; both spiking engines report activity computed the same way
    from snnbench.evaluation.harness import RESULT_COLUMNS, RESULT_TABLE
    from snnbench.tracking.runstore import RunStore

    table = RunStore([tracking_store]).latest("noise_sweep").table(RESULT_TABLE)
    assert list(table.columns[:len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS) and len(table) == len(children)
    for engine in ("nengo-snn", "snntorch-snn"):
        rows = table[table.engine == engine]
        assert (rows.effective_acs_per_sample > 0).all() and (rows.membrane_updates_per_sample > 0).all()
        assert rows.activation_sparsity.between(0, 1, inclusive="neither").all()
    assert (table[table.engine == "ort-dnn"].effective_acs_per_sample == 0).all()
    assert (table.accuracy_ci_low <= table.accuracy).all() and (table.accuracy <= table.accuracy_ci_high).all()


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_duplicates(tracking_store, monkeypatch):
    require_data()
    args = ["noise_sweep", "--families", "ort-dnn,snntorch-snn", "--modalities", "image", "--stds", "0,1",
            "--positions", "pre,post", "--seeds", "2", *TINY]
    real_evaluate, calls = noise_sweep.evaluate, []

    def interrupted(*a, **k):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        return real_evaluate(*a, **k)

    monkeypatch.setattr(noise_sweep, "evaluate", interrupted)
    assert main(args) == 130
    assert len(_children(tracking_store)) == 4
    monkeypatch.setattr(noise_sweep, "evaluate", real_evaluate)
    assert main(args) == 0
    children = _children(tracking_store)
    per_subject = 1 + 2 * 2 * 2
    expected = per_subject * 3  # ort conversion-mlp, ort multimodal image, snntorch image
    keys = [r.data.tags[tracking.CONFIG_KEY] for r in children]
    assert len(keys) == expected and len(set(keys)) == expected
    parents = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(parents) == 1
    parent = MlflowClient(tracking_store).get_run(parents.pop())
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["children"] == expected and parent.data.metrics["children_reused"] == 4
    # a third run of the same sweep evaluates nothing again
    monkeypatch.setattr(noise_sweep, "evaluate", lambda *a, **k: pytest.fail("re-evaluated a finished run"))
    assert main(args) == 0
    assert len(_children(tracking_store)) == expected


def _image_shaped_mlp(path, seed=0):
    """A user's model: trained briefly on MNIST, exported with an image-shaped (N, 1, 28, 28) input."""
    import torch
    from torch import nn

    from snnbench.models.export import export_onnx
    from snnbench.training.suite import training_data, TrainSettings

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    train = training_data("image", TrainSettings(train_limit=3000))[0]
    x, y = torch.as_tensor(train.x.reshape(-1, 1, 28, 28)), torch.as_tensor(train.y)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(3):
        for a in range(0, len(x), 100):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[a:a + 100]), y[a:a + 100]).backward()
            optimizer.step()
    return export_onnx(model.eval(), (1, 28, 28), path)


@pytest.mark.slow
def test_a_users_image_shaped_onnx_model_is_swept_in_ort_and_nengo(tracking_store, tmp_path, capsys):
    require_data()
    onnx_file = _image_shaped_mlp(tmp_path / "mine.onnx")
    assert main(["noise_sweep", "--onnx-model", str(onnx_file), "--dataset", "mnist", "--stds", "0,0.5",
                 "--positions", "input", "--test-limit", "200", "--steps", "8"]) == 0
    children = _children(tracking_store)
    assert {(c.data.params["family"], c.data.params["model"]) for c in children} == {("ort-dnn", "user"),
                                                                                    ("nengo-snn", "user")}
    clean = {c.data.params["family"]: c.data.metrics["accuracy"] for c in children if c.data.params["std"] == "0.0"
             and c.data.params["position"] == "none"}
    assert clean["ort-dnn"] > 0.8 and abs(clean["ort-dnn"] - clean["nengo-snn"]) <= 0.05
    parent = MlflowClient(tracking_store).get_run(children[0].data.tags["mlflow.parentRunId"])
    assert parent.info.run_name == "noise_sweep quick, your model on mnist"
    # a model whose input does not fit the dataset: one line naming both shapes, no run
    assert main(["noise_sweep", "--onnx-model", str(onnx_file), "--dataset", "fsdd"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "(1, 28, 28)" in error and "fsdd" in error
    assert len(MlflowClient(tracking_store).search_runs(
        [MlflowClient(tracking_store).get_experiment_by_name("noise_sweep").experiment_id])) == len(children) + 1


@pytest.mark.slow
def test_the_models_of_a_study_run_are_swept_as_they_are(tracking_store):
    require_data()
    assert main(["multimodal_study", "--epochs", "1", "--train-limit", "100", "--test-limit", "60", "--seeds", "2",
                 "--modalities", "audio", "--device", "cpu"]) == 0
    client = MlflowClient(tracking_store)
    study = client.search_runs([client.get_experiment_by_name("multimodal_study").experiment_id],
                               filter_string="tags.`snnbench.benchmark` = 'multimodal_study'")[0]
    assert main(["noise_sweep", "--models-from", study.info.run_id, "--modalities", "audio",
                 "--families", "ort-dnn,snntorch-snn", "--stds", "0.5", "--positions", "post", "--test-limit", "60"]) == 0
    sweep = _children(tracking_store)
    assert {(c.data.params["family"], c.data.params["model_seed"]) for c in sweep} == {
        (f, s) for f in ("ort-dnn", "snntorch-snn") for s in ("0", "1")}
    # the study's own models, not new ones: every sweep child's metrics are linked to a model the study logged
    study_children = client.search_runs([study.info.experiment_id],
                                        filter_string=f"tags.`mlflow.parentRunId` = '{study.info.run_id}'")
    study_models = {c.data.tags["snnbench.model_id"] for c in study_children}
    linked = {m.run_id for model_id in study_models for m in client.get_logged_model(model_id).metrics or []}
    assert {c.info.run_id for c in sweep} <= linked
    parent = client.get_run(sweep[0].data.tags["mlflow.parentRunId"])
    assert parent.data.params["model_seeds"] == "[0, 1]" and "2 model seeds" in parent.info.run_name
    assert not [m for m in client.search_logged_models([parent.info.experiment_id]) if m.source_run_id == parent.info.run_id]
    from snnbench.tracking.runstore import RunStore

    gaps = RunStore([tracking_store]).latest("noise_sweep").table("paired_gaps.json")
    row = gaps[(gaps.noise_position == "post")].iloc[0]
    assert row.snn == "snntorch-snn" and row.repeats == 2 and row.ci_low_pp <= row.gap_pp <= row.ci_high_pp


@pytest.mark.slow
def test_the_loihi_target_adds_the_emulator_with_input_noise_only(tracking_store):
    require_data()
    assert main(["noise_sweep", "--target", "nengo-loihi", "--families", "ort-dnn", "--modalities", "image",
                 "--stds", "0.5", "--positions", "input,post", *TINY]) == 0
    children = _children(tracking_store)
    loihi = [c for c in children if c.data.params["family"] == "loihi-emulator"]
    # both DNNs of the image modality, clean and input noise only (a chip takes noise on its input spikes)
    assert {(c.data.params["model"], c.data.params["position"]) for c in loihi} == {
        (m, p) for m in ("conversion-mlp", "multimodal") for p in ("none", "input")}
    clean = {(c.data.params["family"], c.data.params["model"]): c.data.metrics["accuracy"] for c in children
             if c.data.params["position"] == "none"}
    assert clean[("loihi-emulator", "conversion-mlp")] >= clean[("ort-dnn", "conversion-mlp")] - 0.15
    from snnbench.tracking.runstore import RunStore

    gaps = RunStore([tracking_store]).latest("noise_sweep").table("paired_gaps.json")
    assert "loihi-emulator" in set(gaps.snn)
