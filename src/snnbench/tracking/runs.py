"""MLflow conventions shared by every benchmark.

* Store: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory.
* One experiment per benchmark, tagged for model development (the UI opens on its runs table).
  Each run logs its parameters (seed included), package versions, git commit, device and data
  checksums; runs on a CUDA device also log system metrics (CPU, memory, GPU). Data sets are
  logged as run inputs (:func:`log_dataset`), trained models as MLflow models
  (:func:`log_trained_model`).
* Sweeps: a parent run with one nested child run per configuration. Parent and children carry
  a key (a hash of their configuration), so a sweep run again with the same parameters reopens
  its unfinished parent and skips the children already finished.
* Sweeps that share a store (two shells, or machines on one tracking server): each child is
  claimed before it runs (:func:`claimed_child`), so every configuration runs once. A process
  refreshes a heartbeat tag on the runs it holds; a claim whose heartbeat is older than the
  lease (``SNNBENCH_LEASE_SECONDS``, default 120 s; machines' clocks must agree well within it)
  was left by a killed process and is taken over.
"""

import hashlib
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import weakref
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from snnbench.errors import SnnbenchError

URI_ENV = "MLFLOW_TRACKING_URI"
LEASE_ENV = "SNNBENCH_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 120.0
PACKAGES = ("snnbench", "mlflow", "torch", "snntorch", "onnx", "onnxruntime", "numpy", "nengo",
            "nengo-dl", "tensorflow", "keras", "scipy", "optuna")
SWEEP_KEY = "snnbench.sweep_key"
CONFIG_KEY = "snnbench.config_key"
CONFIG_FILE = "config.yaml"  # the command's resolved options: `snnbench COMMAND --config config.yaml` replays it
MODEL_ID_TAG = "snnbench.model_id"  # the MLflow model a run trained (models:/<id>)
HEARTBEAT = "snnbench.heartbeat"        # ms since the epoch, refreshed while a process holds the run
TICKET = "snnbench.claim_ticket"        # a claim's place in line (absent while it is being drawn)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
PARENT = "mlflow.parentRunId"

_logger = logging.getLogger(__name__)


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


def lease_seconds() -> float:
    text = os.environ.get(LEASE_ENV, "")
    try:
        lease = float(text) if text else DEFAULT_LEASE_SECONDS
    except ValueError:
        lease = -1.0
    if not lease > 0:
        raise SnnbenchError(f"{LEASE_ENV}={text!r}: give the claim lease in seconds (> 0), or unset it")
    return lease


def _now_ms() -> int:
    return int(time.time() * 1000)


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


def _mark_model_development(experiment):
    """Tag the experiment so that the MLflow UI opens it on the training runs, not GenAI traces."""
    key, kind = EXPERIMENT_KIND
    if experiment.tags.get(key) != kind:
        MlflowClient().set_experiment_tag(experiment.experiment_id, key, kind)


class _Heartbeat:
    """While started, a background thread refreshes the run's heartbeat tag (every quarter lease)."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> "_Heartbeat":
        MlflowClient().set_tag(self.run_id, HEARTBEAT, str(_now_ms()))
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _beat(self):
        client = MlflowClient()
        while not self._stop.wait(lease_seconds() / 4):
            try:
                client.set_tag(self.run_id, HEARTBEAT, str(_now_ms()))
            except Exception as exc:  # a store hiccup: the next beat tries again
                _logger.warning("heartbeat of run %s not written: %s", self.run_id, exc)


def _alive(run, lease: float) -> bool:
    """Held by a live process: running, with a heartbeat (or start) within the lease."""
    beat = int(run.data.tags.get(HEARTBEAT) or run.info.start_time or 0)
    return run.info.status == "RUNNING" and _now_ms() - beat < lease * 1000


_COMMAND_CONFIG = {"yaml": None}  # the running command's resolved options (snnbench.cli)


def set_command_config(text: str | None):
    """The resolved options of the command this process runs, as ``--config`` reads them: its
    benchmark run logs them as ``config.yaml``."""
    _COMMAND_CONFIG["yaml"] = text


@contextmanager
def benchmark_run(benchmark: str, params: dict, *, device: str = "cpu", run_name: str | None = None,
                  data_checksums: dict | None = None, resume: bool = False):
    """A top-level run in the benchmark's experiment, with params and environment logged.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the project's run is used, in its experiment.
    Otherwise, with ``resume``, an unfinished run of the same benchmark and parameters that no
    live process holds is reopened instead of starting a new one.
    """
    mlflow.set_tracking_uri(tracking_uri())
    key = config_key({"benchmark": benchmark, **params})
    # Taken out of the environment: mlflow.start_run reopens MLFLOW_RUN_ID for any run started
    # without a run id, so the sweep's first child run would otherwise become the parent.
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if run_id:
        experiment = mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    else:
        experiment = mlflow.set_experiment(benchmark)
        run_id = _unfinished_run(experiment.experiment_id, key) if resume else None
    _mark_model_development(experiment)
    with mlflow.start_run(run_id=run_id, run_name=run_name, log_system_metrics=_system_metrics(device)) as run, \
            _Heartbeat(run.info.run_id):
        mlflow.set_tags({SWEEP_KEY: key, "snnbench.benchmark": benchmark})
        if run_name:  # under `mlflow run` too, whose run has a random name
            mlflow.set_tag("mlflow.runName", run_name)
        _log_params(params)
        _log_environment(device, data_checksums)
        if _COMMAND_CONFIG["yaml"]:
            mlflow.log_text(_COMMAND_CONFIG["yaml"], CONFIG_FILE)
        yield run


def _unfinished_run(experiment_id: str, key: str) -> str | None:
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_KEY}` = '{key}' and attributes.status != 'FINISHED'"
        f" and tags.`{PARENT}` IS NULL", order_by=["attributes.start_time DESC"], max_results=100)
    lease = lease_seconds()
    return next((r.info.run_id for r in runs if not _alive(r, lease)), None)


# --------------------------------------------------------------------------- claimed child runs

@contextmanager
def claimed_child(name: str, config: dict, *, device: str = "cpu", data_checksums: dict | None = None,
                  wait: bool = False, reuse: bool = True):
    """A nested run for one configuration of the active sweep, claimed first, so that concurrent
    invocations of the sweep on one store run each configuration once.

    Yields the child run (active, params and environment logged) when this process holds the
    configuration, or None: it is finished (:func:`finished_child` returns it) or, unless
    ``wait``, another live process holds it. With ``wait`` it blocks while another process holds
    it, then yields None if that process finished it, or the child run if that process died.
    ``reuse=False`` counts only this parent's children (a sweep that repeats finished work).
    If the body raises, the child run is deleted: no half-done configuration stays behind.
    """
    claim = _Claim(name, config, reuse)
    run_id = claim.acquire(wait)
    if run_id is None:
        yield None
        return
    try:
        with mlflow.start_run(run_id=run_id, nested=True, log_system_metrics=_system_metrics(device)) as run:
            _log_params(config)
            _log_environment(device, data_checksums)
            yield run
    except BaseException:
        claim.heartbeat.stop()
        MlflowClient().delete_run(run_id)
        raise
    finally:
        claim.heartbeat.stop()


class _Claim:
    """Claims one configuration of the active sweep on the store (Lamport's bakery: a claim
    is a child run; it draws a ticket one above every live claim's, then waits until no live
    claim is still drawing; the lowest (ticket, run id) holds the configuration, the others
    delete their claim)."""

    def __init__(self, name: str, config: dict, reuse: bool):
        self.client = MlflowClient()
        self.parent = self.client.get_run(mlflow.active_run().info.run_id)
        self.name, self.key = name, config_key(config)
        scope = f"tags.`{SWEEP_KEY}` = '{self.parent.data.tags[SWEEP_KEY]}'"
        if not reuse:
            scope += f" and tags.`{PARENT}` = '{self.parent.info.run_id}'"
        self.filter = f"{scope} and tags.`{CONFIG_KEY}` = '{self.key}'"
        self.lease = lease_seconds()
        self.heartbeat = None

    def runs(self) -> list:
        """This configuration's finished runs and live claims; dead claims are retired on sight."""
        runs = self.client.search_runs([self.parent.info.experiment_id], filter_string=self.filter,
                                       max_results=1000)
        for run in runs:
            if run.info.status == "RUNNING" and not _alive(run, self.lease):
                self._retire(run.info.run_id)
        return [r for r in runs if r.info.status == "FINISHED" or _alive(r, self.lease)]

    def acquire(self, wait: bool) -> str | None:
        poll = min(5.0, self.lease / 10)
        while True:
            runs = self.runs()
            if any(r.info.status == "FINISHED" for r in runs):
                return None
            if not runs:
                run_id = self._draw()
                if run_id:
                    return run_id
            if not wait:
                return None
            time.sleep(poll)

    def _draw(self) -> str | None:
        """Enter a claim; its run id if it holds the configuration, else None (claim deleted)."""
        from mlflow.tracking.context.registry import resolve_tags

        tags = {PARENT: self.parent.info.run_id, "mlflow.runName": self.name, CONFIG_KEY: self.key,
                SWEEP_KEY: self.parent.data.tags[SWEEP_KEY], HEARTBEAT: str(_now_ms())}
        run_id = self.client.create_run(self.parent.info.experiment_id, run_name=self.name,
                                        tags=resolve_tags(tags)).info.run_id
        self.heartbeat = _Heartbeat(run_id).start()
        try:
            tickets = [int(r.data.tags[TICKET]) for r in self.runs() if TICKET in r.data.tags]
            ticket = 1 + max(tickets, default=0)
            self.client.set_tag(run_id, TICKET, str(ticket))
            while True:
                runs = self.runs()
                others = [r for r in runs if r.info.run_id != run_id]
                if any(r.info.status == "FINISHED" for r in others):
                    break
                if any(TICKET not in r.data.tags for r in others):  # still drawing: wait for its ticket
                    time.sleep(0.2)
                    continue
                if all((ticket, run_id) < (int(r.data.tags[TICKET]), r.info.run_id) for r in others):
                    return run_id
                break
        except BaseException:
            self._give_up(run_id)
            raise
        self._give_up(run_id)
        return None

    def _give_up(self, run_id: str):
        self.heartbeat.stop()
        self.client.delete_run(run_id)

    def _retire(self, run_id: str):
        """A claim whose process died: ended as KILLED and deleted (its results are incomplete)."""
        try:
            self.client.set_terminated(run_id, "KILLED")
            self.client.delete_run(run_id)
        except MlflowException:  # another process retired it first
            pass


def finished_child(config: dict) -> "mlflow.entities.Run | None":
    """The finished child run of this configuration in the active run's sweep, or None."""
    client = MlflowClient()
    parent = client.get_run(mlflow.active_run().info.run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{SWEEP_KEY}` = '{parent.data.tags.get(SWEEP_KEY)}' and "
                      f"tags.`{CONFIG_KEY}` = '{config_key(config)}' and attributes.status = 'FINISHED'",
        max_results=1)
    return runs[0] if runs else None


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
    sources = list(urls)
    if not sources:
        raise SnnbenchError("a data set without mnist/ or fsdd/ checksums has no known source to log")
    dataset = mlflow.data.from_numpy(features.x, targets=features.y, source=urls[sources[0]],
                                     name="+".join(sources), digest=_digest(features))
    mlflow.log_input(dataset, context=context, tags={f"source.{name}": urls[name] for name in sources})
    return dataset
