"""The multimodal suite's commands: a tiny real run logs its metrics; sweeps resume; bad input."""

import json

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from conftest import require_data
from snnbench.benchmarks.multimodal_grid import study_report
from snnbench.cli.main import main
from snnbench.models.multimodal import ModelSpec
from snnbench.training.grid import STEP_PARTS, trained_multimodal_model
from snnbench.training.suite import TrainSettings, load_trained_multimodal

TINY = ["--epochs", "1", "--train-limit", "200", "--test-limit", "60", "--size", "S/3", "--device", "cpu"]


def runs_of(experiment: str):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_quick_multimodal_run_logs_metrics(tracking_store):
    require_data()
    assert main(["multimodal", *TINY, "--modalities", "image,audio"]) == 0
    client, parents, children = runs_of("multimodal")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["modality"] for c in children) == ["audio", "image"]
    for child in children:
        metrics = child.data.metrics
        for family in ("dnn", "snn"):
            for name in ("best_val_accuracy", "test_accuracy", "train_samples_per_s", "parameter_count"):
                assert f"{family}_{name}" in metrics, (family, name)
            low, high = metrics[f"{family}_test_accuracy_ci_low"], metrics[f"{family}_test_accuracy_ci_high"]
            assert low < metrics[f"{family}_test_accuracy"] < high  # a real interval around it
            history = client.get_metric_history(child.info.run_id, f"{family}_val_accuracy")
            assert [m.step for m in history] == [0]
        assert abs(metrics["dnn_ort_test_accuracy"] - metrics["dnn_test_accuracy"]) < 0.02
        assert child.data.params["n_test"] == "60"
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "summary.png" in artifacts and "summary.json" in artifacts
    assert any(k.startswith("test_accuracy/image/snn") for k in parents[0].data.metrics)
    # the fixed-schema table: the children's figures, and activity for the snntorch SNN as for any SNN
    from snnbench.evaluation.harness import RESULT_COLUMNS, RESULT_TABLE
    from snnbench.tracking.runstore import RunStore

    table = RunStore([tracking_store]).latest("multimodal").table(RESULT_TABLE)
    assert list(table.columns[:len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS) and len(table) == 4
    for child in children:
        for family, engine in (("dnn", "torch-dnn"), ("snn", "snntorch-snn")):
            row = table[(table.engine == engine) & (table.modality == child.data.params["modality"])].iloc[0]
            assert row.accuracy == pytest.approx(child.data.metrics[f"{family}_test_accuracy"]) and row.n == 60
    snn = table[table.engine == "snntorch-snn"]
    assert (snn.effective_acs_per_sample > 0).all() and snn.activation_sparsity.between(0, 1, "neither").all()


def test_noise_sweep_reuses_the_trained_model_and_resume_skips_finished(tracking_store):
    require_data()
    args = ["noise_position", *TINY, "--modalities", "audio", "--noise-std", "0.5"]
    assert main(args) == 0
    _, _, children = runs_of("noise_position")
    assert sorted(c.data.params["noise_position"] for c in children) == ["post", "pre"]
    folders = {c.data.tags["snnbench.snn_model_folder"] for c in children}
    assert len(folders) == 1  # trained once, evaluated under each noise
    clean = {c.data.metrics["snn_clean_test_accuracy"] for c in children}
    assert len(clean) == 1 and all("snn_test_accuracy" in c.data.metrics for c in children)
    for child in children:  # ONNX Runtime gets the very noise draws torch got
        assert child.data.metrics["dnn_ort_torch_max_abs_diff"] < 1e-3
        assert child.data.metrics["dnn_ort_test_accuracy"] == child.data.metrics["dnn_test_accuracy"]
    assert main([*args, "--resume"]) == 0
    _, parents, children_after = runs_of("noise_position")
    assert len(parents) == 2 and len(children_after) == 2  # nothing re-run


def test_cached_model_round_trip(tracking_store):
    require_data()
    spec = ModelSpec(modality="audio", family="dnn", size="S/3")
    settings = TrainSettings(epochs=1, train_limit=100)
    folder = trained_multimodal_model(spec, settings)
    assert trained_multimodal_model(spec, settings) == folder
    model, loaded, result = load_trained_multimodal(folder)
    assert loaded == spec and (folder / "model.onnx").exists()
    assert result["n_train"] + result["n_val"] == 100 and result["n_val"] == 19  # audio: 500 / 2700


def test_bad_input_is_one_line_error_and_starts_no_run(tracking_store, capsys):
    assert main(["reset_sweep", *TINY, "--beta", "1.5"]) == 2
    assert "beta" in capsys.readouterr().err
    assert mlflow.MlflowClient().get_experiment_by_name("reset_sweep") is None


def test_sweep_with_seeds_logs_each_seed_and_the_mean_with_its_interval(tracking_store):
    require_data()
    assert main(["reset_sweep", *TINY, "--modalities", "audio", "--seeds", "2"]) == 0
    client, parents, children = runs_of("reset_sweep")
    assert sorted((c.data.params["reset"], c.data.params["seed"]) for c in children) == [
        ("hard", "0"), ("hard", "1"), ("soft", "0"), ("soft", "1")]
    for child in children:
        metrics = child.data.metrics
        assert metrics["snn_test_accuracy_ci_low"] <= metrics["snn_test_accuracy"] <= metrics["snn_test_accuracy_ci_high"]
        assert child.data.params["validation"] == "recordings"
    per_seed = [c.data.metrics["snn_test_accuracy"] for c in children if c.data.params["reset"] == "soft"]
    parent = parents[0].data.metrics
    assert parent["test_accuracy/audio/snn/reset_soft"] == pytest.approx(np.mean(per_seed))
    half = parent["test_accuracy/audio/snn/reset_soft/ci_high"] - np.mean(per_seed)
    assert half == pytest.approx(stats.t.ppf(0.975, 1) * np.std(per_seed, ddof=1) / np.sqrt(2))


def test_study_command_trains_the_grid_with_seeds_and_writes_its_results(tracking_store, tmp_path, monkeypatch):
    require_data()
    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))  # a model cache of its own: it trains what it times
    out = tmp_path / "results.json"
    assert main(["multimodal_study", "--epochs", "1", "--train-limit", "100", "--test-limit", "60", "--seeds", "2",
                 "--modalities", "audio", "--device", "cpu", "--results-out", str(out), "--step-parts", "1"]) == 0
    client, parents, children = runs_of("multimodal_study")
    assert len(parents) == 1 and len(children) == 20  # 10 audio configurations x 2 seeds
    results = json.loads(out.read_text())
    assert len(results["runs"]) == 20 and results["meta"]["seeds"] == [0, 1]
    run = results["runs"][0]
    assert run["test/clean"]["n"] == 60 and set(run) >= {"test/pre/0.1", "test/post/5"}
    assert run["test/clean"]["ci_low"] <= run["test/clean"]["accuracy"] <= run["test/clean"]["ci_high"]
    entry = next(e for e in results["summary"] if (e["experiment"], e["family"], e["value"]) == ("timesteps", "snn", 16))
    assert entry["n_seeds"] == 2 and entry["mean"] == pytest.approx(np.mean(entry["values"]))
    child = children[0]
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")] == [0]
    assert "test_accuracy_pre_5_ci_high" in child.data.metrics
    # each child holds its trained model as an MLflow model, for other benchmarks to take by reference
    assert client.get_logged_model(child.data.tags["snnbench.model_id"]).source_run_id == child.info.run_id
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"results.json", "report"} <= artifacts
    assert parents[0].data.metrics["train_product_flops"] > 0 and parents[0].data.metrics["train_optimiser_bytes"] > 0
    parts = {k: v for k, v in parents[0].data.metrics.items() if k.startswith("step_")}  # --step-parts: timed first
    assert set(parts) == {f"{kind}/{part}" for kind in ("step_ms", "step_grid_seconds") for part in STEP_PARTS}
    assert all(value > 0 for value in parts.values())
    assert main(["multimodal_study", "--epochs", "1", "--train-limit", "100", "--test-limit", "60", "--seeds", "2",
                 "--modalities", "audio", "--device", "cpu", "--resume"]) == 0
    _, parents_after, children_after = runs_of("multimodal_study")
    assert len(parents_after) == 2 and len(children_after) == 20  # a finished grid is not run again

    # the report's multimodal section renders the run's results: the t-interval over the two seeds
    assert main(["report", "--name", "study"]) == 0
    text = (tmp_path / "reports" / "study.md").read_text()
    mean, low, high = entry["mean"], max(entry["ci_low"], 0.0), min(entry["ci_high"], 1.0)
    section = text.split("### Accuracy vs time steps")[1]
    row = next(line for line in section.splitlines() if line.startswith("| audio | SNN | test accuracy |"))
    assert f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]" in row
    assert (tmp_path / "reports" / "study" / "study_timesteps.png").stat().st_size > 1000
    # the run that trained states its arithmetic (the resumed one trained nothing)
    flops = sum(e["product_flops"] for entries in results["meta"]["speeds"].values() for e in entries)
    assert f"{flops:.2e} floating-point operations" in study_report(results, tmp_path / "figures")
