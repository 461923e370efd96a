"""On a CUDA device (skipped elsewhere, as in CI): the captured CUDA graphs train exactly what
plain steps train, and the grid's time limit stops every stack checkpointed and resumes it to the
weights of an uninterrupted run. Run on a GPU machine with ``pytest -m gpu``."""

import shutil

import pytest
import torch

from conftest import require_data
from snnbench.models.multimodal import ModelSpec
from snnbench.training.grid import Engine, Job, train_jobs
from snnbench.training.suite import TrainSettings, load_trained_multimodal

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = [torch.device("cuda")]
SPECS = [ModelSpec("image", "snn", "S/3"), ModelSpec("image", "snn", "S/3", reset="hard"), ModelSpec("audio", "dnn", "S/3")]


def _jobs(epochs: int):
    return [Job(spec, TrainSettings(epochs=epochs, train_limit=500, seed=seed)) for seed in (0, 1) for spec in SPECS]


def _weights(jobs):
    return {job.key: {k: v.clone() for k, v in load_trained_multimodal(job.folder)[0].state_dict().items()} for job in jobs}


def _clear(jobs):
    for job in jobs:
        shutil.rmtree(job.folder, ignore_errors=True)


def test_cuda_graph_steps_train_what_plain_steps_train():
    require_data()
    jobs = _jobs(epochs=2)
    _clear(jobs)
    assert train_jobs(jobs, CUDA, Engine(graphs=False, compile=False, tf32=False))["complete"]
    plain = _weights(jobs)
    _clear(jobs)
    assert train_jobs(jobs, CUDA, Engine(graphs=True, compile=False, tf32=False))["complete"]
    for key, weights in _weights(jobs).items():
        for name, value in weights.items():
            # the same kernels replayed: identical up to atomics in cuBLAS reductions
            assert torch.allclose(value, plain[key][name], rtol=0, atol=1e-5), (key, name)


def test_time_limit_stops_checkpointed_and_resumes_to_the_same_weights():
    require_data()
    jobs = _jobs(epochs=4)
    engine = Engine(graphs=True, compile=False, tf32=False)
    _clear(jobs)
    assert train_jobs(jobs, CUDA, engine)["complete"]
    uninterrupted = _weights(jobs)
    _clear(jobs)
    stopped = train_jobs(jobs, CUDA, engine, time_limit=1e-6)  # stops at the first epoch end
    assert not stopped["complete"] and not any(job.trained() for job in jobs)
    assert train_jobs(jobs, CUDA, engine)["complete"]
    for key, weights in _weights(jobs).items():
        assert all(torch.allclose(weights[k], uninterrupted[key][k], rtol=0, atol=1e-5) for k in weights), key
