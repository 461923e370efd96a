"""The executor on a real Dask cluster (a scheduler and two worker processes on the loopback
address): a noise sweep gives the in-process results, survives a killed worker, a grid trains
the in-process models, set-up runs on every worker, a tune study stops at exactly --n-trials, a bad address is one line and
leaves nothing behind."""

import functools
import os
import shutil
import signal
import threading
import time

import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from cluster import LoopbackCluster
from conftest import require_data
from test_tuning import Bowl
from snnbench import tuning
from snnbench.benchmarks import noise_sweep
from snnbench.cli.main import main
from snnbench.execution import Executor
from snnbench.models.multimodal import ModelSpec
from snnbench.training.cache import cache_identity
from snnbench.training.grid import Engine, Job, StackShare, train_jobs, train_share
from snnbench.training.suite import TrainSettings, load_trained_multimodal
from snnbench.tracking import runs as tracking

SWEEP = ["noise_sweep", "--families", "ort-dnn,snntorch-snn", "--modalities", "image", "--stds", "0,1",
         "--positions", "input,post", "--test-limit", "60", "--train-limit", "300", "--epochs", "1",
         "--snn-steps", "3"]


@pytest.fixture
def loopback(tmp_path):
    cluster = LoopbackCluster(tmp_path, workers=2)
    yield cluster
    cluster.close()


def _children(uri: str) -> dict:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(noise_sweep.BENCHMARK)
    runs = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` != ''", max_results=1000)
    return {r.data.tags[tracking.CONFIG_KEY]: r for r in runs}


def _sweep(uri: str, monkeypatch, *extra) -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main([*SWEEP, *extra]) == 0
    return _children(uri)


def test_a_sweep_on_the_cluster_gives_the_in_process_results(loopback, tmp_path, monkeypatch):
    require_data()
    here = _sweep(f"sqlite:///{tmp_path / 'here.db'}", monkeypatch)
    there = _sweep(f"sqlite:///{tmp_path / 'there.db'}", monkeypatch, "--cluster", loopback.address)
    assert len(here) == 3 * (1 + 2 * 2) and set(there) == set(here)  # one child per configuration
    for key, run in here.items():
        assert there[key].data.metrics["accuracy"] == run.data.metrics["accuracy"], run.info.run_name
        assert there[key].data.metrics["clean_accuracy"] == run.data.metrics["clean_accuracy"]


def test_a_worker_killed_mid_sweep_loses_nothing(loopback, tmp_path, monkeypatch):
    require_data()
    killed = []

    def kill_a_busy_worker():
        from distributed import Client

        with Client(loopback.address, timeout="30s") as client:
            pids = client.run(os.getpid)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys]
                if len(busy) == 2:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                    return
                time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    children = _sweep(f"sqlite:///{tmp_path / 'mlflow.db'}", monkeypatch, "--cluster", loopback.address)
    killer.join()
    assert killed, "no moment with both workers busy"
    assert len(children) == 3 * (1 + 2 * 2)  # every configuration, once
    assert all(r.info.status == "FINISHED" for r in children.values())


def _bowl(task):
    from test_tuning import Bowl

    return Bowl(task, pause=0.05)


def test_a_study_on_the_cluster_stops_at_exactly_n_trials(loopback, tmp_path, tracking_store):
    task = tuning.ConversionTask(val_samples=8, val_steps=2)
    for storage in (f"sqlite:///{tmp_path / 'optuna.db'}", "dask:"):
        options = tuning.StudyOptions(f"on-the-cluster-{storage[:4]}", storage=storage, n_trials=9)
        with Executor.connect(loopback.address) as executor:
            tuning.run_benchmark(task, options, score_test=False, objective_factory=_bowl, executor=executor)
            study = tuning.load_study(options, task, storage=tuning.study_storage(storage, executor))
            assert len(study.get_trials(deepcopy=False, states=tuning.FINISHED)) == 9
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("tune_conversion").experiment_id
    children = client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''", max_results=100)
    assert len(children) == 2 * 9 and {c.data.tags["optuna.worker"] for c in children} <= {"0", "1"}


def test_a_worker_killed_mid_trial_leaves_the_study_at_exactly_n_trials(loopback, tmp_path, tracking_store):
    """DaskStorage has no heartbeat: the dead worker's trial stays RUNNING until the driver, once
    every unit has returned, fails it and runs a replacement."""
    task = tuning.ConversionTask(val_samples=8, val_steps=2)
    options = tuning.StudyOptions("killed-mid-trial", storage="dask:", n_trials=8)
    killed = []

    def kill_a_worker_mid_trial(storage):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            try:
                study = tuning.load_study(options, task, storage=storage)
            except KeyError:  # not created yet
                time.sleep(0.1)
                continue
            running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if "pid" in t.user_attrs and t.user_attrs["pid"] != os.getpid()]
            if running:
                os.kill(running[0].user_attrs["pid"], signal.SIGKILL)
                killed.append(running[0].number)
            time.sleep(0.05)

    with Executor.connect(loopback.address) as executor:
        storage = tuning.study_storage(options.storage, executor)
        killer = threading.Thread(target=kill_a_worker_mid_trial, args=(storage,), daemon=True)
        killer.start()
        tuning.run_benchmark(task, options, score_test=False, objective_factory=_pid_bowl, executor=executor)
        killer.join()
        trials = tuning.load_study(options, task, storage=storage).get_trials(deepcopy=False)
    assert killed, "no trial was seen running on a worker"
    assert len([t for t in trials if t.state in tuning.FINISHED]) == 8
    assert [t.number for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")] == killed
    assert not [t for t in trials if t.state == TrialState.RUNNING]


class _PidBowl(Bowl):
    """The tuning tests' Bowl, each trial marked with the process that runs it and lasting 1 s."""

    def __call__(self, trial):
        trial.set_user_attr("pid", os.getpid())
        return super().__call__(trial)


def _pid_bowl(task):
    return _PidBowl(task, pause=1.0)


def _grid_jobs() -> list[Job]:
    return [Job(ModelSpec("image", "snn", "S/3", reset=reset), TrainSettings(epochs=1, train_limit=200, seed=seed))
            for seed in (0, 1) for reset in ("soft", "hard")]


def _weights(job: Job) -> dict:
    return load_trained_multimodal(job.folder)[0].state_dict()


def test_a_grid_on_a_worker_with_its_own_cache_trains_the_in_process_models(tmp_path):
    """The worker trains in its own cache (as on another machine); the models come back as bytes."""
    require_data()
    jobs = _grid_jobs()
    assert train_jobs(jobs)["complete"]
    here = {job.key: _weights(job) for job in jobs}
    for job in jobs:
        shutil.rmtree(job.folder)
    worker_cache = tmp_path / "worker-cache"
    cluster = LoopbackCluster(tmp_path, workers=1, env={"SNNBENCH_CACHE": str(worker_cache)})
    try:
        with Executor.connect(cluster.address) as executor:
            assert train_jobs(jobs, executor=executor)["complete"]
    finally:
        cluster.close()
    assert len(list(worker_cache.rglob("state.pt"))) == len(jobs)  # trained there, unpacked here
    for job in jobs:
        for name, value in _weights(job).items():
            assert torch.allclose(value, here[job.key][name], rtol=0, atol=1e-6), (job.spec, name)


def test_a_worker_sharing_the_drivers_cache_sends_no_model_bytes():
    require_data()
    jobs = tuple(_grid_jobs()[:2])
    shared = train_share(StackShare(jobs, "cpu", Engine(), 0.0, cache_identity()))
    assert shared["models"] == [] and all(job.trained() for job in jobs)
    elsewhere = train_share(StackShare(jobs, "cpu", Engine(), 0.0, "another-host:/cache"))
    assert [m["place"] for m in elsewhere["models"]] == [job.folder.relative_to(job.folder.parents[2]).as_posix()
                                                         for job in jobs]


def _note_pid(folder):
    (folder / f"{os.getpid()}.pid").touch()


def test_set_up_runs_once_on_every_worker_or_here_in_process(loopback, tmp_path):
    with Executor.connect(loopback.address) as executor:
        executor.on_workers(functools.partial(_note_pid, tmp_path))
    assert sorted(int(p.stem) for p in tmp_path.glob("*.pid")) == sorted(w.pid for w in loopback.workers)
    for p in tmp_path.glob("*.pid"):
        p.unlink()
    Executor().on_workers(functools.partial(_note_pid, tmp_path))
    assert [int(p.stem) for p in tmp_path.glob("*.pid")] == [os.getpid()]


def test_an_unreachable_scheduler_is_one_line_and_nothing_is_written(tracking_store, capsys):
    started = time.monotonic()
    assert main([*SWEEP, "--cluster", "tcp://127.0.0.1:9"]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "tcp://127.0.0.1:9" in error[0], error
    assert time.monotonic() - started < 60
    client = MlflowClient(tracking_store)
    assert not client.search_experiments(filter_string=f"name = '{noise_sweep.BENCHMARK}'")
