"""MLflow conventions shared by every benchmark.

* Store: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory.
* One experiment per benchmark; each run logs its parameters (seed included), package versions,
  git commit, device and data checksums.
* Sweeps: a parent run with nested child runs. Parent and children carry a key (a hash of their
  configuration), so a sweep run again with the same parameters reopens its unfinished parent
  and skips the children already finished.
"""

import hashlib
import json
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

URI_ENV = "MLFLOW_TRACKING_URI"
PACKAGES = ("snnbench", "mlflow", "torch", "snntorch", "onnx", "onnxruntime", "numpy", "nengo",
            "nengo-dl", "tensorflow", "keras", "scipy", "optuna")
SWEEP_KEY = "snnbench.sweep_key"
CONFIG_KEY = "snnbench.config_key"


def tracking_uri() -> str:
    return os.environ.get(URI_ENV) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-able configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The checkout's commit (with '+dirty' for uncommitted changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment(device: str = "cpu") -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "git_commit": git_commit(), "device": device, "packages": package_versions()}


def _log_params(params: dict):
    """Log params, skipping keys already on the run (``mlflow run`` logs its entry-point params)."""
    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    flat = {k: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v for k, v in params.items()}
    mlflow.log_params({k: v for k, v in flat.items() if k not in existing})


def _log_environment(device: str, data_checksums: dict | None):
    env = environment(device)
    tags = {"snnbench.git_commit": env["git_commit"], "snnbench.device": device,
            "snnbench.python": env["python"]}
    tags.update({f"version.{k}": v for k, v in env["packages"].items()})
    tags.update({f"data.{k}": v for k, v in (data_checksums or {}).items()})
    mlflow.set_tags(tags)
    mlflow.log_dict({**env, "data_checksums": data_checksums or {}}, "environment.json")


@contextmanager
def benchmark_run(benchmark: str, params: dict, *, device: str = "cpu", run_name: str | None = None,
                  data_checksums: dict | None = None, resume: bool = False):
    """A top-level run in the benchmark's experiment, with params and environment logged.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the project's run is used, in its experiment.
    Otherwise, with ``resume``, an unfinished run of the same benchmark and parameters is
    reopened instead of starting a new one.
    """
    mlflow.set_tracking_uri(tracking_uri())
    key = config_key({"benchmark": benchmark, **params})
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        experiment = mlflow.set_experiment(benchmark)
        run_id = _unfinished_run(experiment.experiment_id, key) if resume else None
    with mlflow.start_run(run_id=run_id, run_name=run_name) as run:
        mlflow.set_tags({SWEEP_KEY: key, "snnbench.benchmark": benchmark})
        _log_params(params)
        _log_environment(device, data_checksums)
        yield run


@contextmanager
def child_run(name: str, config: dict, *, device: str = "cpu", data_checksums: dict | None = None):
    """A nested run under the active run, tagged with its configuration and its sweep's key."""
    sweep = mlflow.get_run(mlflow.active_run().info.run_id).data.tags.get(SWEEP_KEY, "")
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.set_tags({CONFIG_KEY: config_key(config), SWEEP_KEY: sweep})
        _log_params(config)
        _log_environment(device, data_checksums)
        yield run


def _unfinished_run(experiment_id: str, key: str) -> str | None:
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_KEY}` = '{key}' and attributes.status != 'FINISHED'"
        " and tags.`mlflow.parentRunId` IS NULL", order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def finished_children(parent_run_id: str) -> dict:
    """Finished child runs of this sweep, by configuration key: those under this parent and
    those of an interrupted earlier run of the same sweep (same sweep key)."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    sweep = parent.data.tags.get(SWEEP_KEY)
    if not sweep:
        return {}
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{SWEEP_KEY}` = '{sweep}' and attributes.status = 'FINISHED'",
        max_results=50000)
    return {r.data.tags[CONFIG_KEY]: r for r in runs
            if CONFIG_KEY in r.data.tags and "mlflow.parentRunId" in r.data.tags}
