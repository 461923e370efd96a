"""Tracking: runs land in the configured sqlite store with their environment; sweeps resume."""

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from snnbench import tracking


def test_default_store_is_sqlite_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_run_logs_params_and_environment(tracking_store):
    with tracking.benchmark_run("demo", {"seed": 7, "stds": [0.0, 0.5]}, device="cpu",
                                data_checksums={"mnist/x.gz": "abc"}) as run:
        mlflow.log_metric("accuracy", 0.5)
    stored = MlflowClient(tracking_store).get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"seed": "7", "stds": "[0.0, 0.5]"}
    tags = stored.data.tags
    assert tags["version.torch"].startswith("2.13.0") and tags["version.nengo"] == "4.1.0"
    assert tags["snnbench.device"] == "cpu" and tags["data.mnist/x.gz"] == "abc"
    assert tags["snnbench.git_commit"] != ""
    env_file = MlflowClient(tracking_store).download_artifacts(run.info.run_id, "environment.json")
    env = json.load(open(env_file))
    assert env["packages"]["mlflow"] == mlflow.__version__ and env["data_checksums"] == {"mnist/x.gz": "abc"}
    assert MlflowClient(tracking_store).get_experiment(stored.info.experiment_id).name == "demo"


def _sweep(params, configs, fail_at=None):
    with tracking.benchmark_run("sweep", params, resume=True) as parent:
        done = tracking.finished_children(parent.info.run_id)
        for i, config in enumerate(configs):
            if tracking.config_key(config) in done:
                continue
            if i == fail_at:
                raise RuntimeError("interrupted")
            with tracking.child_run(f"c{i}", config):
                mlflow.log_metric("accuracy", i)
    return parent.info.run_id


def test_interrupted_sweep_resumes_without_duplicates(tracking_store):
    configs = [{"std": s} for s in (0.0, 0.5, 1.0)]
    with pytest.raises(RuntimeError):
        _sweep({"seed": 0}, configs, fail_at=2)
    parent_id = _sweep({"seed": 0}, configs)
    client = MlflowClient(tracking_store)
    children = client.search_runs([client.get_run(parent_id).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.params["std"] for r in children) == ["0.0", "0.5", "1.0"]
    assert client.get_run(parent_id).info.status == "FINISHED"
    # other parameters -> a new sweep, nothing reused
    other = _sweep({"seed": 1}, configs)
    assert other != parent_id and len(tracking.finished_children(other)) == 3
