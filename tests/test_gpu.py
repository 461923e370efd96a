"""On a CUDA device (skipped elsewhere, as in CI): the captured CUDA graphs train exactly what
plain steps train, and the grid's time limit stops every stack checkpointed and resumes it to the
weights of an uninterrupted run. Run on a GPU machine with ``pytest -m gpu``."""

import shutil

import pytest
import torch

from conftest import require_data
from snnbench.models.multimodal import ModelSpec
from snnbench.models.spiking import neuron_scan
from snnbench.training.grid import STEP_PARTS, Engine, Job, StackTrainer, time_step_parts, train_jobs
from snnbench.training.grid.trainer import STEPS_PER_GRAPH
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
    assert train_jobs(jobs, CUDA, Engine(graphs=False, scan="eager", tf32=False))["complete"]
    plain = _weights(jobs)
    _clear(jobs)
    assert train_jobs(jobs, CUDA, Engine(graphs=True, scan="eager", tf32=False))["complete"]
    for key, weights in _weights(jobs).items():
        for name, value in weights.items():
            # the same kernels replayed: identical up to atomics in cuBLAS reductions
            assert torch.allclose(value, plain[key][name], rtol=0, atol=1e-5), (key, name)


def test_time_limit_stops_checkpointed_and_resumes_to_the_same_weights():
    require_data()
    jobs = _jobs(epochs=4)
    engine = Engine(graphs=True, scan="eager", tf32=False)
    _clear(jobs)
    assert train_jobs(jobs, CUDA, engine)["complete"]
    uninterrupted = _weights(jobs)
    _clear(jobs)
    stopped = train_jobs(jobs, CUDA, engine, time_limit=1e-6)  # stops at the first epoch end
    assert not stopped["complete"] and not any(job.trained() for job in jobs)
    assert train_jobs(jobs, CUDA, engine)["complete"]
    for key, weights in _weights(jobs).items():
        assert all(torch.allclose(weights[k], uninterrupted[key][k], rtol=0, atol=1e-5) for k in weights), key


@pytest.mark.parametrize("surrogate", ["atan", "fast_sigmoid", "sigmoid", "triangular", "straight_through"])
@pytest.mark.parametrize("direct", [False, True], ids=["per-step", "direct"])
def test_the_triton_scan_equals_the_eager_scan(surrogate, direct):
    """Spikes and membranes bit for bit (FMA contraction is off); input-current gradients up to the
    summation order of a direct current's steps. Members differ in decay and reset; the output
    layer's membrane readout (no reset) is a member too."""
    torch.manual_seed(0)
    members, steps, batch, width = 4, 6, 50, 300
    shape = (members, batch, width) if direct else (members, steps, batch, width)
    current = 1.5 * torch.randn(shape, device="cuda")
    beta = torch.tensor([0.9, 1.0, 0.8, 0.95], device="cuda").view(-1, 1, 1)
    hard = torch.tensor([0.0, 1.0, 1.0, 0.0], device="cuda").view(-1, 1, 1)
    soft = torch.tensor([1.0, 0.0, 0.0, 0.0], device="cuda").view(-1, 1, 1)  # the last: no reset
    weights = torch.randn((members, steps, batch, width), device="cuda"), torch.randn((members, steps, batch, width), device="cuda")
    results = {}
    for kernel in ("eager", "triton"):
        leaf = current.clone().requires_grad_()
        spikes, membranes = neuron_scan(leaf, beta, hard, soft, surrogate, kernel, steps if direct else None)
        ((spikes * weights[0]).sum() + (membranes * weights[1]).sum()).backward()
        results[kernel] = spikes.detach(), membranes.detach(), leaf.grad
    (s0, m0, g0), (s1, m1, g1) = results["eager"], results["triton"]
    assert s0.sum() > 0 and torch.equal(s0, s1) and torch.equal(m0, m1)
    assert g0.isfinite().all() and g1.isfinite().all()  # the sigmoid's too, far below threshold
    assert torch.allclose(g0, g1, rtol=1e-5, atol=1e-5)  # division and exp: ulps
    grads = []
    for kernel in ("eager", "triton"):  # the readout: membranes alone carry a gradient
        leaf = current.clone().requires_grad_()
        neuron_scan(leaf, beta, hard, soft, surrogate, kernel, steps if direct else None)[1].mean(1).sum().backward()
        grads.append(leaf.grad)
    assert grads[1].isfinite().all() and torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_the_triton_scan_trains_what_the_eager_scan_trains():
    require_data()
    jobs = _jobs(epochs=2)
    trained = []
    for scan in ("eager", "triton"):
        _clear(jobs)
        assert train_jobs(jobs, CUDA, Engine(graphs=True, scan=scan, tf32=False))["complete"]
        trained.append(_weights(jobs))
    for key, weights in trained[1].items():
        assert all(torch.allclose(weights[k], trained[0][key][k], rtol=0, atol=1e-5) for k in weights), key


def test_the_step_parts_replay_as_captured_graphs():
    """Each timed part is a graph of STEPS_PER_GRAPH steps: the optimiser part steps Adam that often
    per replay, the forward part leaves the weights; timing them all saves nothing."""
    require_data()
    trainer = StackTrainer(_jobs(epochs=1)[:2], CUDA[0])
    trainer.ready()
    params = trainer.net.parameters()
    steps = [float(trainer.optimiser.state[p]["step"]) for p in params]
    weights = [p.detach().clone() for p in params]
    trainer.part_steps("forward")()
    trainer.part_steps("optimiser")()
    torch.cuda.synchronize()
    assert [float(trainer.optimiser.state[p]["step"]) for p in params] == [s + STEPS_PER_GRAPH for s in steps]
    assert all(torch.equal(w, p) for w, p in zip(weights, params))  # zero gradients, zero moments: no update
    jobs = _jobs(epochs=1)
    _clear(jobs)
    times, _ = time_step_parts(jobs, CUDA[0], replays=2)
    assert set(times) == set(STEP_PARTS) and all(ms > 0 for ms in times.values())
    assert not any(job.trained() for job in jobs)
