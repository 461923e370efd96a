"""Sweeps that share a store: real processes run one sweep on one sqlite store. Every
configuration runs exactly once, and a claim left by a killed process is taken over.

Run as a script, this file is the worker: one invocation of a sweep whose configurations
(``{"i": 0..n-1}``) each sleep a while inside their claimed child run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

EXPERIMENT = "claims"


def worker(n: int, seconds: float, ready: Path, start: Path, out: Path):
    import mlflow

    from snnbench.tracking import runs as tracking

    # Widen the race: both invocations see a configuration unclaimed, then both claim it; the
    # claims themselves must decide which one runs it.
    draw = tracking._Claim._draw
    tracking._Claim._draw = lambda claim: time.sleep(0.3) or draw(claim)
    ran, seen = [], {}
    with tracking.benchmark_run(EXPERIMENT, {"n": n}, resume=True):
        ready.touch()
        while not start.exists():  # start together with the other invocation
            time.sleep(0.05)
        for waiting in (False, True):
            for i in range(n):
                if i in seen:
                    continue
                with tracking.claimed_child(f"config {i}", {"i": i}, wait=waiting) as run:
                    if run is not None:
                        time.sleep(seconds)
                        mlflow.log_metric("pid", os.getpid())
                        ran.append(i)
                finished = tracking.finished_child({"i": i})
                if finished is not None:
                    seen[i] = finished.info.run_id
    out.write_text(json.dumps({"ran": ran, "seen": sorted(seen)}))


def _start(tmp_path: Path, name: str, n: int, seconds: float, lease: float) -> tuple:
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # the store exists before they start
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "SNNBENCH_LEASE_SECONDS": str(lease)}
    env.pop("MLFLOW_RUN_ID", None)
    files = [tmp_path / f"{name}.{suffix}" for suffix in ("ready", "start", "json")]
    process = subprocess.Popen([sys.executable, __file__, str(n), str(seconds), *map(str, files)],
                               env=env, cwd=tmp_path)
    return process, files


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _children(uri: str, view_type: int = 1) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], run_view_type=view_type, max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_two_invocations_share_a_sweep_and_run_each_configuration_once(tmp_path):
    n = 8
    workers = [_start(tmp_path, name, n, seconds=0.4, lease=5) for name in ("a", "b")]
    _wait_for(lambda: all(files[0].exists() for _, files in workers), 60, "both invocations to start")
    for _, files in workers:
        files[1].touch()
    for process, _ in workers:
        assert process.wait(timeout=90) == 0
    results = [json.loads(files[2].read_text()) for _, files in workers]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    children = _children(uri)
    assert sorted(int(r.data.params["i"]) for r in children) == list(range(n))  # each exactly once
    assert all(r.info.status == "FINISHED" for r in children)
    assert sorted(results[0]["ran"] + results[1]["ran"]) == list(range(n))
    assert results[0]["ran"] and results[1]["ran"]  # the work was shared
    assert results[0]["seen"] == results[1]["seen"] == list(range(n))  # each waited for the other's


def test_a_claim_left_by_a_killed_process_is_taken_over(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stuck, files = _start(tmp_path, "killed", 3, seconds=600, lease=2)
    files[1].touch()

    def holding() -> bool:
        return MlflowClient(uri).get_experiment_by_name(EXPERIMENT) is not None and \
            any(r.info.status == "RUNNING" for r in _children(uri))
    _wait_for(holding, 60, "the first invocation to claim a configuration")
    stuck.send_signal(signal.SIGKILL)
    stuck.wait()
    killed = next(r for r in _children(uri) if r.info.status == "RUNNING")
    time.sleep(2)  # the lease: its heartbeats have stopped for that long

    process, files = _start(tmp_path, "next", 3, seconds=0.1, lease=2)
    files[1].touch()
    assert process.wait(timeout=90) == 0
    assert json.loads(files[2].read_text())["ran"] == [0, 1, 2]
    children = _children(uri)
    assert sorted(int(r.data.params["i"]) for r in children) == [0, 1, 2]
    assert all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1  # the dead parent was resumed
    retired = MlflowClient(uri).get_run(killed.info.run_id)
    assert retired.info.status == "KILLED" and retired.info.lifecycle_stage == "deleted"


if __name__ == "__main__":
    worker(int(sys.argv[1]), float(sys.argv[2]), *map(Path, sys.argv[3:6]))
