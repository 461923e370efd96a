"""One run tree under `mlflow run`: the real `mlflow run . -e noise_sweep --env-manager local`
on a tiny grid. The project's run is the parent, with its own name and params and no child's
data; every configuration has exactly one child run; the UI finds a model-development
experiment, datasets on the children and the models, with the metrics computed on them; the
run's summary reaches the terminal."""

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from conftest import require_data
from snnbench.tracking import runs as tracking
from snnbench.benchmarks import noise_sweep
from snnbench.benchmarks.noise_sweep_models import SweepSettings

REPO = Path(__file__).resolve().parents[1]
GRID = {"families": "ort-dnn", "modalities": "image", "stds": "0,0.5", "positions": "input"}
TINY = {"test_limit": "50", "train_limit": "300", "epochs": "1"}  # undeclared: passed on as --test_limit 50


def test_mlflow_run_noise_sweep_is_one_tree(tmp_path):
    require_data()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # the venv's mlflow and python
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    command = ["mlflow", "run", str(REPO), "-e", "noise_sweep", "--env-manager", "local",
               "--experiment-name", "noise_sweep"]
    for key, value in {**GRID, **TINY}.items():
        command += ["-P", f"{key}={value}"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    project_run = re.search(r"Run \(ID '(\w+)'\) succeeded", done.stderr).group(1)
    # the run's summary reaches the terminal through `mlflow run`: name, id, headline, how to open it
    assert f"Run 'noise_sweep quick, 1 model seed' (id {project_run}) finished." in done.stdout
    assert "Clean accuracy, % [95% interval]" in done.stdout and "noise_sweep.md" in done.stdout
    assert f"mlflow ui --backend-store-uri {uri}" in done.stdout and f"/runs/{project_run}" in done.stdout

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("noise_sweep")
    assert experiment.tags[tracking.EXPERIMENT_KIND[0]] == tracking.EXPERIMENT_KIND[1]
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [p.info.run_id for p in parents] == [project_run]
    parent = parents[0]

    # the parent: its own name and params, the sweep's summary, nothing of a child
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name not in {c.info.run_name for c in children} and "std=" not in parent.info.run_name
    assert parent.data.tags["mlflow.project.entryPoint"] == "noise_sweep"
    assert {k: parent.data.params[k] for k in GRID} == GRID and parent.data.params["test_limit"] == "50"
    assert not {"family", "model", "position", "std", "noise_seed"} & set(parent.data.params)
    assert "accuracy" not in parent.data.metrics and parent.data.metrics["children"] == 6
    # the resolved options as a config file that replays the run
    from snnbench.benchmarks import benchmark_parser

    config = client.download_artifacts(project_run, tracking.CONFIG_FILE, str(tmp_path))
    replayed = benchmark_parser("noise_sweep").parse_args(["--config", config])
    assert replayed.stds == [0.0, 0.5] and replayed.test_limit == 50 and replayed.families == ["ort-dnn"]
    # resolved settings, never the profile's placeholder
    assert parent.data.params["steps"] == "20" and "auto" not in parent.data.params.values()

    # exactly one child per configuration of the grid
    config = SweepSettings(families=["ort-dnn"], modalities=["image"], positions=["input"], stds=[0.0, 0.5],
                           seeds=1, noise_mode="frozen", seed=0)
    expected = sorted(tracking.config_key(c) for s in noise_sweep.subjects(config) for c in noise_sweep.grid(s, config))
    assert sorted(c.data.tags[tracking.CONFIG_KEY] for c in children) == expected and len(expected) == 6
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == project_run and child.info.status == "FINISHED"
        assert 0 <= child.data.metrics["accuracy"] <= 1
        [data] = child.inputs.dataset_inputs
        assert data.dataset.name == "mnist" and {t.value for t in data.tags} >= {"test"}

    # the models, as MLflow models of the parent, with the children's metrics linked
    mlflow.set_tracking_uri(uri)
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert sorted(m.name for m in models) == ["conversion-mlp", "multimodal-dnn-image"]
    for model in models:
        assert model.source_run_id == project_run
        linked = {m.run_id for m in model.metrics if m.key == "accuracy"}
        assert len(linked) == 3 and linked <= {c.info.run_id for c in children}
        assert project_run not in {m.run_id for m in model.metrics}  # the sweep's summary is no model's
