"""Tracking: runs land in the configured sqlite store with their environment, in experiments the
UI opens as model development; sweeps resume; `mlflow run`'s run stays the parent; data sets are
logged inputs; CUDA runs log system metrics; no credential is logged."""

import json
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from snnbench.tracking import runs as tracking
from snnbench.data import FeatureSet
from snnbench.errors import DataError, StorageError

KIND, MODEL_DEVELOPMENT = tracking.EXPERIMENT_KIND


def test_default_store_is_sqlite_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_run_logs_params_and_environment(tracking_store):
    with tracking.benchmark_run("demo", {"seed": 7, "stds": [0.0, 0.5]}, device="cpu",
                                data_checksums={"mnist/x.gz": "abc"}) as run:
        mlflow.log_metric("accuracy", 0.5)
    client = MlflowClient(tracking_store)
    stored = client.get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"seed": "7", "stds": "[0.0, 0.5]"}
    tags = stored.data.tags
    assert tags["version.torch"].startswith("2.13.0") and tags["version.nengo"] == "4.1.0"
    assert tags["snnbench.device"] == "cpu" and tags["data.mnist/x.gz"] == "abc"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(tracking.__file__).parent, capture_output=True,
                          text=True).stdout.strip()
    assert tags["snnbench.git_commit"].split("+")[0] == (head or "unknown")  # the checkout's commit
    env = json.load(open(client.download_artifacts(run.info.run_id, "environment.json")))
    assert env["packages"]["mlflow"] == mlflow.__version__ and env["data_checksums"] == {"mnist/x.gz": "abc"}
    experiment = client.get_experiment(stored.info.experiment_id)
    assert experiment.name == "demo" and experiment.tags[KIND] == MODEL_DEVELOPMENT
    assert not any(k.startswith("system/") for k in stored.data.metrics)  # CPU runs: no system metrics


def test_an_existing_experiment_is_tagged_for_model_development(tracking_store):
    client = MlflowClient(tracking_store)
    experiment_id = client.create_experiment("made-elsewhere")
    assert KIND not in client.get_experiment(experiment_id).tags
    with tracking.benchmark_run("made-elsewhere", {"seed": 0}):
        pass
    assert client.get_experiment(experiment_id).tags[KIND] == MODEL_DEVELOPMENT


def _sweep(params, configs, fail_at=None):
    with tracking.benchmark_run("sweep", params, resume=True) as parent:
        done = tracking.finished_children(parent.info.run_id)
        for i, config in enumerate(configs):
            if tracking.config_key(config) in done:
                continue
            with tracking.child_run(f"c{i}", config):
                mlflow.log_metric("partial", i)
                if i == fail_at:
                    raise RuntimeError("interrupted")
                mlflow.log_metric("accuracy", i)
    return parent.info.run_id


def test_interrupted_sweep_resumes_without_duplicates(tracking_store):
    configs = [{"std": s} for s in (0.0, 0.5, 1.0)]
    with pytest.raises(RuntimeError):
        _sweep({"seed": 0}, configs, fail_at=2)
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    # the configuration that failed half-way left no run behind
    assert sorted(r.info.run_name for r in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")) \
        == ["c0", "c1"]
    parent_id = _sweep({"seed": 0}, configs)
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.params["std"] for r in children) == ["0.0", "0.5", "1.0"]
    assert all(r.info.status == "FINISHED" and "accuracy" in r.data.metrics for r in children)
    assert client.get_run(parent_id).info.status == "FINISHED"
    # other parameters -> a new sweep, nothing reused
    other = _sweep({"seed": 1}, configs)
    assert other != parent_id and len(tracking.finished_children(other)) == 3


def test_a_sweep_still_running_is_refused_in_one_line_unless_resumed(tracking_store):
    client = MlflowClient(tracking_store)
    experiment_id = client.create_experiment("sweep")
    key = tracking.config_key({"benchmark": "sweep", "seed": 0})
    other = client.create_run(experiment_id, tags={tracking.SWEEP_KEY: key}).info.run_id  # still RUNNING
    with pytest.raises(StorageError, match="still running.*--resume.*--cluster"):
        with tracking.benchmark_run("sweep", {"seed": 0}, resume="stopped", sweep=True):
            pass
    assert len(client.search_runs([experiment_id])) == 1  # nothing started
    with tracking.benchmark_run("sweep", {"seed": 0}, resume=True, sweep=True) as run:
        pass
    assert run.info.run_id == other  # taken over
    client.set_terminated(other, "FAILED")
    with tracking.benchmark_run("sweep", {"seed": 0}, resume="stopped", sweep=True) as run:
        pass
    assert run.info.run_id == other  # a failed run is reopened without asking


def test_no_credential_is_logged(tracking_store):
    """URL passwords are masked in params, tags and the logged environment document."""
    secret = "s3cr3t-pw"
    params = {"storage": f"postgresql+psycopg2://me:{secret}@db.example/optuna",
              "servers": [f"https://u:{secret}@mlflow.example"]}
    with tracking.benchmark_run("masked", params, data_checksums={"note": f"mysql://r:{secret}@h/d"}) as run:
        mlflow.set_tag("extra", "x")
        with tracking.child_run("child", {"url": f"http://a:{secret}@b/c"}) as child:
            pass
    client = MlflowClient(tracking_store)
    for run_id in (run.info.run_id, child.info.run_id):
        stored = client.get_run(run_id)
        texts = [*stored.data.params.values(), *stored.data.tags.values()]
        folder = client.download_artifacts(run_id, "")
        texts += [p.read_text() for p in Path(folder).rglob("*") if p.is_file()]
        assert texts and not any(secret in text for text in texts)
    stored = client.get_run(run.info.run_id)
    assert stored.data.params["storage"] == "postgresql+psycopg2://me:***@db.example/optuna"
    assert client.get_run(child.info.run_id).data.params["url"] == "http://a:***@b/c"


def test_mlflow_run_hand_over_stays_the_parent(tracking_store, monkeypatch):
    """`mlflow run` passes its run in MLFLOW_RUN_ID: it is the parent, and children are new runs."""
    client = MlflowClient(tracking_store)
    experiment_id = client.create_experiment("handed-over")
    project_run = client.create_run(experiment_id, run_name="project-run").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", project_run)
    with tracking.benchmark_run("handed-over", {"seed": 0}, resume=True) as parent:
        with mlflow.start_run(run_name="trial", nested=True) as trial:  # a plain nested run (Optuna's trials)
            mlflow.log_param("trial", 0)
        for i in range(2):
            with tracking.child_run(f"child {i}", {"i": i}) as child:
                mlflow.log_metric("accuracy", i)
    assert parent.info.run_id == project_run and trial.info.run_id != project_run
    stored = client.get_run(project_run)
    # named for what it is, instead of the name `mlflow run` gave it
    assert stored.info.run_name == "handed-over, seed 0" and "accuracy" not in stored.data.metrics
    assert "i" not in stored.data.params and "trial" not in stored.data.params
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{project_run}'")
    assert sorted(r.info.run_name for r in children) == ["child 0", "child 1", "trial"]
    assert child.info.run_id != project_run
    assert client.get_experiment(experiment_id).tags[KIND] == MODEL_DEVELOPMENT


def test_datasets_are_logged_inputs_with_a_digest_of_their_samples(tracking_store):
    rng = np.random.default_rng(0)
    checksums = {"mnist/t10k-images-idx3-ubyte.gz": "abc", "fsdd/recordings": "def"}
    fused = FeatureSet(rng.random((20, 5), dtype=np.float32), rng.integers(0, 10, 20), checksums)
    with tracking.benchmark_run("data", {"seed": 0}):
        a = tracking.log_dataset(fused, "test")
        b = tracking.log_dataset(fused.subset(np.arange(10)), "validation")
        again = tracking.log_dataset(FeatureSet(fused.x.copy(), fused.y.copy(), checksums), "test")
        run_id = mlflow.active_run().info.run_id
    assert a.digest == again.digest and a.digest != b.digest
    inputs = MlflowClient(tracking_store).get_run(run_id).inputs.dataset_inputs
    logged = {(i.dataset.name, i.dataset.digest, next(t.value for t in i.tags if t.key == "mlflow.data.context"))
              for i in inputs}
    assert logged == {("mnist+fsdd", a.digest, "test"), ("mnist+fsdd", b.digest, "validation")}
    assert json.loads(inputs[0].dataset.profile)["features_shape"][1] == 5
    with pytest.raises(DataError, match="no known source"):
        with tracking.benchmark_run("data", {"seed": 1}):
            tracking.log_dataset(FeatureSet(fused.x, fused.y, {}), "test")


def test_cuda_runs_log_system_metrics(tracking_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with tracking.benchmark_run("gpu", {"seed": 0}, device="cuda") as run:
        time.sleep(1.0)
    metrics = MlflowClient(tracking_store).get_run(run.info.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
