"""MLflow conventions shared by every benchmark.

* Store: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory.
* One experiment per benchmark, tagged for model development. Each run logs its parameters (seed
  included), package versions, git commit, device and data checksums, and on CUDA system metrics;
  data sets are logged as run inputs (:func:`log_dataset`).
* Sweeps: a parent run with one nested child run per configuration, logged by the driver (the work
  may run on a cluster, snnbench.execution). Both carry a hash of their configuration, so a sweep
  run again reopens its unfinished parent and skips the children already finished; one still
  marked running is not started twice (``--resume`` takes it over).
* No credential is logged: URL passwords in params, tags and logged documents are masked.
* Every run is named for what it is; the store is opened (:func:`check_store`) before any work. A run
  that fails carries the one-line reason (``snnbench.failure`` tag and its description); one that
  finishes prints its summary (:mod:`snnbench.tracking.summary`).
"""

import hashlib
import importlib.util
import json
import logging
import os
import platform
import sqlite3
import subprocess
import sys
import textwrap
import weakref
from contextlib import closing, contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from snnbench.errors import DataError, SnnbenchError, StorageError
from snnbench.execution.masking import mask_credentials
from snnbench.tracking import summary

URI_ENV = "MLFLOW_TRACKING_URI"
PACKAGES = ("snnbench", "mlflow", "torch", "snntorch", "onnx", "onnxruntime", "numpy", "nengo",
            "nengo-dl", "tensorflow", "keras", "scipy", "optuna")
SWEEP_KEY = "snnbench.sweep_key"
CONFIG_KEY = "snnbench.config_key"
CONFIG_FILE = "config.yaml"  # the command's resolved options: `snnbench COMMAND --config config.yaml` replays it
MODEL_ID_TAG = "snnbench.model_id"  # the MLflow model a run trained (models:/<id>)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
PARENT = "mlflow.parentRunId"
FAILURE_TAG = "snnbench.failure"      # why a run failed, in one line
DESCRIPTION_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
HTTP_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
STORE_PROBLEM_WIDTH = 200  # characters of a store's own error shown in the one line

_logger = logging.getLogger(__name__)


def tracking_uri() -> str:
    return os.environ.get(URI_ENV) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _sqlite_problem(uri: str) -> str | None:
    """Why the sqlite file of ``uri`` cannot be opened, checked directly: MLflow retries a database it
    cannot open for many minutes."""
    path = uri.split("://", 1)[1][1:].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    folder = Path(path).parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if existing != folder:
        return None  # MLflow makes the missing folders; writability is then sqlite's to judge on first write
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rwc", uri=True)) as database:
            database.execute("pragma schema_version").fetchall()
    except sqlite3.Error as exc:
        return f"sqlite: {exc}"
    return None


def check_store(uri: str | None = None) -> str:
    """The tracking store (default :func:`tracking_uri`), opened before any work (a new sqlite store is
    created); a :class:`StorageError` in one line where it cannot be. Returns the URI."""
    uri = uri or tracking_uri()
    problem = _sqlite_problem(uri) if uri.startswith("sqlite:") else None
    if problem is None:
        retries = os.environ.get(HTTP_RETRIES_ENV)
        os.environ[HTTP_RETRIES_ENV] = "1"  # a server that does not answer: said at once, not after minutes
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:  # each store kind raises its own errors (MLflow's, sqlalchemy's, a missing driver)
            chain = [exc]
            while chain[-1].__cause__ or chain[-1].__context__:
                chain.append(chain[-1].__cause__ or chain[-1].__context__)
            # a system error at the root says it best ('Connection refused', a missing driver)
            exc = next((e for e in reversed(chain) if isinstance(e, (OSError, ImportError))), exc)
            problem = textwrap.shorten(_first_line(exc).split(". ")[0], STORE_PROBLEM_WIDTH, placeholder=" …")
        finally:
            if retries is None:
                os.environ.pop(HTTP_RETRIES_ENV)
            else:
                os.environ[HTTP_RETRIES_ENV] = retries
    if problem:
        raise StorageError(f"the tracking store {mask_credentials(uri)} cannot be opened ({mask_credentials(problem)}); "
                           f"set {URI_ENV} to a store that can (default: sqlite:///mlflow.db in the working folder)")
    return uri


def default_run_name(benchmark: str, params: dict) -> str:
    """A run's name when its command gives none: the benchmark, its profile and seed."""
    profile = f" {params['profile']}" if params.get("profile") else ""
    seed = f", seed {params['seed']}" if "seed" in params else ""
    return f"{benchmark}{profile}{seed}"


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-able configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


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


@cache
def _environment() -> dict:
    """This process's python, platform, commit and package versions (read once: the code it runs is the
    code it loaded)."""
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "git_commit": git_commit(), "packages": {p: _version(p) for p in PACKAGES}}


def _log_run(params: dict, device: str, data_checksums: dict | None):
    """The active run's params (those not already on it: ``mlflow run`` logs its entry-point params),
    environment tags (commit, device, python, package versions, data checksums) and ``environment.json``."""
    run_id = mlflow.active_run().info.run_id
    existing = mlflow.get_run(run_id).data.params
    flat = {k: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v for k, v in mask_credentials(params).items()}
    checksums = data_checksums or {}
    env = {**_environment(), "device": device}
    tags = {"snnbench.git_commit": env["git_commit"], "snnbench.device": device, "snnbench.python": env["python"],
            **{f"version.{k}": v for k, v in env["packages"].items()}, **{f"data.{k}": v for k, v in checksums.items()}}
    # params and tags in one write (MLflow's fluent calls: one each)
    MlflowClient().log_batch(run_id, params=[Param(k, str(v)) for k, v in flat.items() if k not in existing],
                             tags=[RunTag(k, str(v)) for k, v in mask_credentials(tags).items()])
    mlflow.log_dict(mask_credentials({**env, "data_checksums": checksums}), "environment.json")


def _system_metrics(device: str) -> bool | None:
    """True on CUDA (CPU, memory and GPU use logged as system/* metrics; needs psutil, and
    nvidia-ml-py for the GPU), else None: MLflow's own setting
    (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING) decides."""
    if not str(device).startswith("cuda"):
        return None
    if importlib.util.find_spec("psutil") is None:
        _logger.warning("no system metrics on this CUDA run: install psutil and nvidia-ml-py")
        return None
    return True


_COMMAND_CONFIG = {"yaml": None}  # the running command's resolved options (snnbench.cli)


def set_command_config(text: str | None):
    """The resolved options of the command this process runs, as ``--config`` reads them: its
    benchmark run logs them as ``config.yaml``."""
    _COMMAND_CONFIG["yaml"] = text


@contextmanager
def benchmark_run(benchmark: str, params: dict, *, device: str = "cpu", run_name: str | None = None,
                  data_checksums: dict | None = None, resume: bool | str = False, sweep: bool = False):
    """A top-level run in the benchmark's experiment, with params and environment logged.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the project's run is used, in its experiment.
    Otherwise an unfinished run of the same benchmark and parameters is reopened: with ``resume``
    True the newest one (taken over, even if marked running: its process was stopped), with
    ``resume="stopped"`` the newest that ended failed or killed. A ``sweep`` refuses to start
    while a run of it is still marked running, unless ``resume`` is True.

    The run is named ``run_name`` (default: :func:`default_run_name`), under ``mlflow run`` too. If the
    body fails, the run is marked with the one-line reason (:data:`FAILURE_TAG`, and its description);
    when it finishes, its summary is printed (:func:`snnbench.tracking.summary.print_summary`).
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    run_name = run_name or default_run_name(benchmark, params)
    key = config_key({"benchmark": benchmark, **params})
    # Taken out of the environment: mlflow.start_run reopens MLFLOW_RUN_ID for any run started
    # without a run id, so the sweep's first child run would otherwise become the parent.
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if run_id:
        experiment = mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    else:
        experiment = mlflow.set_experiment(benchmark)
        run_id = _unfinished_run(benchmark, experiment.experiment_id, key, resume, sweep)
    kind_tag, kind = EXPERIMENT_KIND  # the MLflow UI then opens the experiment on its runs, not on GenAI traces
    if experiment.tags.get(kind_tag) != kind:
        MlflowClient().set_experiment_tag(experiment.experiment_id, kind_tag, kind)
    with mlflow.start_run(run_id=run_id, run_name=run_name, log_system_metrics=_system_metrics(device)) as run:
        # named under `mlflow run` too, whose run has a random name
        mlflow.set_tags({SWEEP_KEY: key, "snnbench.benchmark": benchmark, "mlflow.runName": run_name})
        _clear_failure(run.info.run_id)
        try:
            _log_run(params, device, data_checksums)
            if _COMMAND_CONFIG["yaml"]:
                mlflow.log_text(mask_credentials(_COMMAND_CONFIG["yaml"]), CONFIG_FILE)
            yield run
        except BaseException as exc:
            _mark_failed(exc)
            raise
    summary.print_summary(run.info.run_id, uri)


def _clear_failure(run_id: str):
    """A reopened run's earlier failure taken off (its description only where it is that failure's)."""
    client = MlflowClient()
    tags = client.get_run(run_id).data.tags
    if FAILURE_TAG in tags:
        client.delete_tag(run_id, FAILURE_TAG)
        if tags.get(DESCRIPTION_TAG) == _failure_description(tags[FAILURE_TAG]):
            client.delete_tag(run_id, DESCRIPTION_TAG)


def _failure_description(reason: str) -> str:
    return f"Failed: {reason}"


def _mark_failed(exc: BaseException):
    """The active run's failure in one line, as a tag and as its description in the UI."""
    if isinstance(exc, KeyboardInterrupt):
        reason = "interrupted; run the same command again to resume"
    elif isinstance(exc, SnnbenchError):
        reason = _first_line(exc)
    else:
        reason = f"{exc.__class__.__name__}: {_first_line(exc)}"
    reason = mask_credentials(reason)[:1000]
    try:
        mlflow.set_tags({FAILURE_TAG: reason, DESCRIPTION_TAG: _failure_description(reason)})
    except Exception as tag_error:  # the store itself may be what failed; the original error is the one to raise
        _logger.warning("could not tag the failed run: %s", _first_line(tag_error))


def _unfinished_run(benchmark: str, experiment_id: str, key: str, resume: bool | str, sweep: bool) -> str | None:
    if not (resume or sweep):
        return None
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_KEY}` = '{key}' and attributes.status != 'FINISHED'"
        f" and tags.`{PARENT}` IS NULL", order_by=["attributes.start_time DESC"], max_results=100)
    running = [r for r in runs if r.info.status == "RUNNING"]
    if sweep and running and resume is not True:
        raise StorageError(f"{benchmark} with these parameters is still running (run {running[0].info.run_id}); "
                           "if its process was stopped, take the run over with --resume; to share its work "
                           "between machines, run it on one Dask cluster with --cluster")
    if resume is True:
        return runs[0].info.run_id if runs else None
    stopped = [r for r in runs if r.info.status in ("FAILED", "KILLED")]
    return stopped[0].info.run_id if resume == "stopped" and stopped else None


# --------------------------------------------------------------------------- child runs

@cache
def _sweep_key(parent_run_id: str) -> str:
    """A sweep's key (its parent run's tag, set when the run starts)."""
    return MlflowClient().get_run(parent_run_id).data.tags[SWEEP_KEY]


@contextmanager
def child_run(name: str, config: dict, *, device: str = "cpu", data_checksums: dict | None = None):
    """A nested run of the active sweep for one configuration, with its params and environment.
    If the body raises, the child run is deleted: no half-done configuration stays behind."""
    tags = {CONFIG_KEY: config_key(config), SWEEP_KEY: _sweep_key(mlflow.active_run().info.run_id)}
    run = mlflow.start_run(run_name=name, nested=True, tags=tags, log_system_metrics=_system_metrics(device))
    try:
        with run:
            _log_run(config, device, data_checksums)
            yield run
    except BaseException:
        MlflowClient().delete_run(run.info.run_id)
        raise


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
            if CONFIG_KEY in r.data.tags and PARENT in r.data.tags}


# --------------------------------------------------------------------------- data sets and models

_DIGESTS = {}  # id(features.x) -> digest, forgotten when the array is freed


def _digest(features) -> str:
    """A hash of the samples themselves (features, labels, shape)."""
    key = id(features.x)
    if key not in _DIGESTS:
        h = hashlib.blake2b(digest_size=8)
        h.update(repr((features.x.shape, str(features.x.dtype))).encode())
        h.update(np.ascontiguousarray(features.x).data)
        h.update(np.ascontiguousarray(features.y).data)
        _DIGESTS[key] = h.hexdigest()
        weakref.finalize(features.x, _DIGESTS.pop, key, None)
    return _DIGESTS[key]


def log_dataset(features, context: str):
    """Log a :class:`snnbench.data.FeatureSet` as an input of the active run and return the
    MLflow dataset: named after its sources (mnist, fsdd, mnist+fsdd), its digest a hash of the
    samples, ``context`` the split it serves as (train, validation, test)."""
    urls = features.sources  # where the checksummed files come from
    if not urls:
        raise DataError("a data set without mnist/ or fsdd/ checksums has no known source to log")
    dataset = mlflow.data.from_numpy(features.x, targets=features.y, source=next(iter(urls.values())),
                                     name="+".join(urls), digest=_digest(features))
    mlflow.log_input(dataset, context=context, tags={f"source.{name}": url for name, url in urls.items()})
    return dataset
