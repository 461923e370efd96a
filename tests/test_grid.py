"""The grid trainer: a stacked run trains each model as training it alone does; it resumes
exactly; stacked evaluation equals the engines' (snntorch-snn, torch-dnn) under every noise; stacks and devices."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import require_data, suite_logits
from snnbench.models.spiking import NoiseDraws
from snnbench.training.grid import (STEP_PARTS, Engine, Job, StackedNet, StackTrainer, evaluate_jobs, product_flops,
                                    run_stacks, share_out, split_k, stack_cost, stacks, time_step_parts, train_jobs)
from snnbench.models.multimodal import ModelSpec, build_model
from snnbench.training.loop import fit, seed_everything
from snnbench.training.suite import TrainSettings, load_trained_multimodal, test_data as suite_test_data, training_data
from snnbench.noise import NoiseSpec

SNN = [ModelSpec("image", "snn", "S/3", reset=r, neuron=n) for r, n in (("soft", "lif"), ("hard", "lif"), ("soft", "if"))]
DNN = ModelSpec("audio", "dnn", "S/3")
RATE = ModelSpec("image", "snn", "S/3", encoding="rate", steps=3)


def tiny(seed: int, epochs: int = 2) -> TrainSettings:
    return TrainSettings(epochs=epochs, train_limit=200, seed=seed)


def state(folder):
    model, _, result = load_trained_multimodal(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}, result


def trained_alone(job: Job) -> tuple[dict, dict]:
    """The job's model trained alone by the generic loop: its snntorch modules (or nn.Sequential)
    under fit(), with the initial weights and seed the grid gives it."""
    train, val = training_data(job.spec.modality, job.settings)
    seed_everything(job.settings.seed)
    model = build_model(job.spec)
    result = fit(model, (train.x, train.y), (val.x, val.y), job.settings)
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy, "history": result.history})


def test_stacked_training_equals_training_each_model_alone():
    """Tolerance: the stacked step computes each model's forward pass and gradients with the
    same operations as SpikingMLP / nn.Sequential under fit(), except that matrix products are
    batched (and the first layer's current is computed once for all steps), which changes
    float32 summation order (~1e-7 relative). Over these 6 Adam steps (lr 1e-3) that leaves
    weight differences of ~1e-6; a different seed, batch order or initial weight gives ~1e-2.
    Rate-encoded members draw their own input spikes, as each alone draws them."""
    require_data()
    jobs = [Job(spec, tiny(seed)) for seed in (0, 1) for spec in SNN + [DNN, RATE]]
    summary = train_jobs(jobs)
    assert summary["complete"] and [s["models"] for s in summary["stacks"]] == [6, 2, 2]  # one stack per shape
    for job in jobs:
        weights, result = trained_alone(job)
        expected_weights, expected = state(job.folder)
        for name, value in weights.items():
            assert torch.allclose(value, expected_weights[name], rtol=0, atol=1e-5), (job.spec, name)
        assert result["best_epoch"] == expected["best_epoch"]
        assert result["best_val_accuracy"] == expected["best_val_accuracy"]
        assert [h["train_loss"] for h in result["history"]] == pytest.approx(
            [h["train_loss"] for h in expected["history"]], rel=1e-5)
    seeds = {job.settings.seed: state(job.folder)[0]["linears.0.weight"] for job in jobs if job.spec == SNN[0]}
    assert not torch.allclose(seeds[0], seeds[1], atol=1e-3)  # each member has its own seed


@pytest.mark.parametrize("spec", [SNN[:2], [RATE]], ids=["direct", "rate"])  # rate: its spike generators too
def test_a_stopped_stack_resumes_as_if_never_stopped(spec):
    require_data()
    jobs = [Job(s, tiny(seed, epochs=3)) for seed in (3, 4) for s in spec]
    run_stacks([StackTrainer(jobs, torch.device("cpu"))])
    uninterrupted = {job.key: state(job.folder) for job in jobs}
    for job in jobs:
        shutil.rmtree(job.folder)
    first = StackTrainer(jobs, torch.device("cpu"))
    first.stopping = True  # stop at the first epoch end, checkpointed
    run_stacks([first])
    assert first.stopped and first.epoch == 1 and not any(job.trained() for job in jobs)
    resumed = StackTrainer(jobs, torch.device("cpu"))
    assert resumed.epoch == 1
    run_stacks([resumed])
    for job in jobs:
        weights, result = state(job.folder)
        expected_weights, expected = uninterrupted[job.key]
        assert all(torch.equal(weights[k], expected_weights[k]) for k in weights)
        assert [h["val_accuracy"] for h in result["history"]] == [h["val_accuracy"] for h in expected["history"]]
    assert not resumed.checkpoint.exists()


def random_members(specs, seed=0):
    torch.manual_seed(seed)
    models = [build_model(spec).eval() for spec in specs]
    with torch.no_grad():  # larger weights, so that the SNNs spike
        for model in models:
            for p in model.parameters():
                p.mul_(4.0)
    return models


@pytest.mark.parametrize("family", ["snn", "dnn"])
@pytest.mark.parametrize("noise", [NoiseSpec(), NoiseSpec(0.5, "pre", seed=2), NoiseSpec(0.5, "post", seed=2),
                                   NoiseSpec(0.3, "input", seed=1), NoiseSpec(0.5, "pre", mode="frozen", seed=4)])
def test_stacked_evaluation_equals_the_engines(family, noise):
    specs = ([ModelSpec("image", "snn", "S/3", steps=3, reset=r, neuron=n) for r, n in (("soft", "lif"), ("hard", "if"))]
             if family == "snn" else [ModelSpec("image", "dnn", "S/3")] * 2)
    models = random_members(specs)
    x = np.random.default_rng(0).random((250, 784), dtype=np.float32)
    net = StackedNet(specs, models, torch.device("cpu"))
    draws = NoiseDraws(noise, torch.device("cpu")) if noise.active else None
    with torch.no_grad():
        stacked = torch.cat([net.forward(torch.from_numpy(x[a:a + 100]).expand(2, -1, -1), draws, a)
                             for a in range(0, 250, 100)], 1).numpy()
    for i, model in enumerate(models):
        expected = suite_logits(model, x, noise, batch_size=64)
        assert np.allclose(stacked[i], expected, rtol=1e-4, atol=1e-4), (family, noise)
        assert (stacked[i].argmax(1) == expected.argmax(1)).mean() > 0.99
    if noise.active:
        clean = suite_logits(models[0], x, None, batch_size=64)
        assert not np.allclose(stacked[0], clean, atol=1e-3)  # the noise reached the network


def test_evaluate_jobs_scores_cached_models_like_their_engines():
    """Rate-encoded models too: stacked, each draws the input spikes its engine draws."""
    require_data()
    jobs = [Job(spec, tiny(seed, epochs=1)) for seed in (0, 1) for spec in (SNN[0], RATE)]
    train_jobs(jobs)
    noise = NoiseSpec(0.5, "post")
    scores = evaluate_jobs(jobs, [NoiseSpec(), noise], torch.device("cpu"), test_limit=300)
    test = suite_test_data("image", 300)
    for job in jobs:
        model, _, _ = load_trained_multimodal(job.folder)
        for spec in (NoiseSpec(), noise):
            logits, labels = scores[(job.key, spec)]
            assert np.array_equal(labels, test.y)
            assert np.allclose(logits, suite_logits(model, test.x, spec), atol=1e-4)


def test_split_products_equal_the_plain_product():
    g, rows, k, out = 3, 5, 8653, 7
    assert split_k(k) == 17 and split_k(784) == 1
    x, weight, bias = torch.randn(g, rows, k), torch.randn(g, k, out), torch.randn(g, out)
    plain = torch.baddbmm(bias.unsqueeze(1), x, weight)
    assert torch.allclose(StackedNet._affine(x, weight, bias), plain, rtol=1e-4, atol=1e-4)


def test_jobs_stack_by_shape_and_split_over_devices():
    jobs = [Job(ModelSpec("audio", "snn", reset=r, neuron=n), tiny(s)) for s in (0, 1)
            for r, n in (("soft", "lif"), ("hard", "if"))]
    jobs += [Job(ModelSpec("audio", "snn", steps=8), tiny(0)), Job(ModelSpec("audio", "dnn"), tiny(0)),
             Job(ModelSpec("audio", "snn"), TrainSettings(epochs=3, train_limit=200))]
    groups = stacks(jobs)
    assert [len(g) for g in groups] == [4, 1, 1, 1]  # seeds, neuron and reset stack; steps, family, epochs do not
    assert [len(g) for g in stacks(jobs, max_stack=3)] == [3, 1, 1, 1, 1]
    narrower = Job(ModelSpec("audio", "snn", "S/2"), tiny(0))
    assert [len(g) for g in stacks(jobs + [narrower])] == [4, 1, 1, 1, 1]
    shares = share_out(groups, 2)
    assert sorted(id(g) for share in shares for g in share) == sorted(id(g) for g in groups)
    loads = [sum(stack_cost(g) for g in share) for share in shares]
    assert abs(loads[0] - loads[1]) <= max(stack_cost(g) for g in groups)  # greedy: balanced to within one stack


def test_engine_options_leave_cpu_training_unchanged():
    require_data()
    jobs = [Job(SNN[0], tiny(5, epochs=1))]
    train_jobs(jobs, engine=Engine(graphs=True, scan="triton", tf32=True, side_by_side=False))
    weights, _ = state(jobs[0].folder)
    shutil.rmtree(jobs[0].folder)
    train_jobs(jobs, engine=Engine(graphs=False, scan="eager"))
    again, _ = state(jobs[0].folder)
    assert all(torch.equal(weights[k], again[k]) for k in weights)  # CUDA-only options do nothing on the CPU


@pytest.mark.parametrize("spec", [DNN, SNN[0], replace(SNN[0], modality="audio", steps=8)], ids=["dnn", "snn", "audio-snn"])
def test_product_flops_counts_what_a_stacked_training_step_multiplies(spec):
    """The grid's arithmetic count equals torch's own count of one sample's training step."""
    from torch.utils.flop_counter import FlopCounterMode

    net = StackedNet([spec], [build_model(spec)], torch.device("cpu"))
    x = torch.rand(1, 1, spec.n_features)
    with FlopCounterMode(display=False) as counter:
        net.forward(x).sum().backward()
    assert counter.get_total_flops() == product_flops(spec)


def test_the_triton_scan_without_triton_is_one_clear_error(monkeypatch):
    import importlib.util

    from snnbench.errors import ConfigError
    from snnbench.models.spiking import scan_kernel

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    with pytest.raises(ConfigError, match="--scan eager"):
        scan_kernel("triton", torch.device("cuda"))  # checked before anything touches the device
    assert scan_kernel("eager", torch.device("cuda")) == "eager"
    assert StackedNet([SNN[0]], [build_model(SNN[0])], torch.device("cpu"), scan="triton").scan == "eager"


def test_each_step_part_does_its_part_alone():
    """The timed parts of a training step: the forward pass changes neither weights nor gradients,
    the step without the optimiser leaves the weights and makes gradients, the optimiser alone
    steps Adam on the gradients there are; the whole step is training's own."""
    require_data()
    trainer = StackTrainer([Job(SNN[0], tiny(0)), Job(SNN[1], tiny(1))], torch.device("cpu"))
    params = trainer.net.parameters()

    def snapshot():
        return [p.detach().clone() for p in params]

    def adam_steps():
        return [int(trainer.optimiser.state[p]["step"]) if p in trainer.optimiser.state else 0 for p in params]

    before = snapshot()
    trainer.part_steps("forward")()
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot())) and all(p.grad is None for p in params)
    assert (trainer.loss_sum > 0).all()  # each member's loss counted
    trainer.part_steps("no_optimiser")()
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot())) and all(p.grad.abs().sum() > 0 for p in params)
    assert adam_steps() == [0] * len(params)
    trainer.part_steps("optimiser")()  # on gradients of zero: Adam's moments stay zero, and so do its updates
    assert adam_steps() == [1] * len(params) and all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    trainer.part_steps("step")()
    assert adam_steps() == [2] * len(params) and not any(torch.equal(a, b) for a, b in zip(before, snapshot()))


def test_timing_the_step_parts_leaves_nothing_behind():
    require_data()
    jobs = [Job(SNN[0], tiny(7, epochs=1)), Job(DNN, tiny(7, epochs=1))]
    times, steps_per_epoch = time_step_parts(jobs, torch.device("cpu"), replays=1)
    assert set(times) == set(STEP_PARTS) and all(ms > 0 for ms in times.values())
    n = StackTrainer(jobs[:1], torch.device("cpu")).train.n
    assert steps_per_epoch == -(-n // jobs[0].settings.batch_size)
    assert not any(job.trained() for job in jobs)  # nothing saved, nothing cached
