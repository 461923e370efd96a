"""The multimodal family: parameter budgets, neuron dynamics, evaluation-only noise."""

import numpy as np
import pytest
import torch
from snntorch import spikegen

from conftest import suite_logits
from snnbench.errors import SnnbenchError
from snnbench.models.multimodal import (S, SIZES, ModelSpec, SpikingMLP, build_model, dnn_forward, parameter_count)
from snnbench.models.spiking import encode, make_neuron, neuron_scan, surrogate_slope
from snnbench.noise import NoiseSpec
from snnbench.training.loop import fit
from snnbench.training.recipes import Recipe


@pytest.mark.parametrize("modality", ["image", "audio", "multimodal"])
def test_parameter_counts_hit_each_size_budget(modality):
    for size, fraction in SIZES.items():
        for family in ("dnn", "snn"):
            model = build_model(ModelSpec(modality=modality, family=family, size=size))
            assert abs(parameter_count(model) / (S * fraction) - 1) < 0.02, (modality, size, family)


def test_dnn_is_plain_linear_relu():
    model = build_model(ModelSpec(modality="image", family="dnn", size="S/3"))
    assert {type(m).__name__ for m in model} == {"Linear", "ReLU"}


def neuron_trace(neuron, current: float, steps: int) -> list:
    mem, trace = torch.zeros(1), []
    for _ in range(steps):
        _, mem = neuron(torch.full((1,), current), mem)
        trace.append(round(float(mem), 4))
    return trace


def test_reset_and_leak_shape_the_membrane_trace():
    # Constant current 0.6, threshold 1, beta 0.9: the membrane crosses 1 at step 2 (0.6, 1.14).
    soft = neuron_trace(make_neuron("lif", "soft", 0.9), 0.6, 4)
    hard = neuron_trace(make_neuron("lif", "hard", 0.9), 0.6, 4)
    no_leak = neuron_trace(make_neuron("if", "soft", 0.9), 0.6, 3)
    assert soft[:2] == hard[:2] == [0.6, 1.14]
    assert soft[2] == pytest.approx(0.9 * 1.14 + 0.6 - 1.0, abs=1e-4)  # threshold subtracted
    assert hard[2] == pytest.approx(0.6, abs=1e-4)  # membrane set to zero, then the new input
    assert no_leak == pytest.approx([0.6, 1.2, 1.2 + 0.6 - 1.0], abs=1e-4)  # IF: no decay


def constant_current_model(reset: str, neuron: str) -> SpikingMLP:
    model = SpikingMLP(ModelSpec(modality="image", size="S/3", reset=reset, neuron=neuron, steps=4))
    with torch.no_grad():
        model.linears[0].weight.zero_()
        model.linears[0].bias.fill_(0.6)
    return model.eval()


def test_model_wires_reset_and_neuron_choice_into_its_layers():
    x = torch.zeros(2, 784)
    traces = {(r, n): constant_current_model(r, n).simulate(x)["mem"][0][:, 0, 0].tolist()
              for r in ("soft", "hard") for n in ("lif", "if")}
    assert traces[("soft", "lif")] == pytest.approx([0.6, 1.14, 0.626, 1.1634], abs=1e-4)
    assert traces[("hard", "lif")] == pytest.approx([0.6, 1.14, 0.6, 1.14], abs=1e-4)
    assert traces[("soft", "if")] == pytest.approx([0.6, 1.2, 0.8, 1.4], abs=1e-4)
    assert traces[("hard", "if")] == pytest.approx([0.6, 1.2, 0.6, 1.2], abs=1e-4)


def small_dnn():
    torch.manual_seed(0)
    return build_model(ModelSpec(modality="image", family="dnn", size="S/3")).eval()


def small_snn(steps=3):
    torch.manual_seed(0)
    return SpikingMLP(ModelSpec(modality="image", size="S/3", steps=steps)).eval()


def as_tensor(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def test_dnn_noise_reaches_pre_and_post_activation():
    model, x = small_dnn(), torch.rand(5, 784)
    lin0, _, lin1, _, lin2 = model
    width = lin0.out_features
    for position in ("pre", "post"):
        noise = NoiseSpec(0.5, position, seed=3)
        d0, d1 = (as_tensor(noise.draw(f"layer{i}", 10, 5, width, 0)) for i in (0, 1))
        if position == "pre":
            expected = lin2(torch.relu(lin1(torch.relu(lin0(x) + d0)) + d1))
        else:
            expected = lin2(torch.relu(lin1(torch.relu(lin0(x)) + d0)) + d1)
        with torch.no_grad():
            got = dnn_forward(model, x, noise, start=10)
        assert torch.allclose(got, expected, atol=1e-5), position
    input_noise = NoiseSpec(0.5, "input", seed=3)
    with torch.no_grad():
        got = dnn_forward(model, x, input_noise, start=10)
        assert torch.allclose(got, model(x + as_tensor(input_noise.draw("input", 10, 5, 784))), atol=1e-5)


def capture(module, store, kind):
    def hook(_, inputs, output):
        store.append(inputs[0].detach().clone() if kind == "in" else output[0].detach().clone())
    return module.register_forward_hook(hook)


def test_snn_pre_noise_is_added_to_each_steps_input_current():
    model, x = small_snn(), torch.rand(4, 784)
    noise = NoiseSpec(0.3, "pre", seed=1)
    currents = []
    handle = capture(model.neurons[0], currents, "in")
    with torch.no_grad():
        model(x, noise, start=200)
    handle.remove()
    width = model.linears[0].out_features
    clean = model.linears[0](x).detach()
    for t, current in enumerate(currents):
        assert torch.allclose(current, clean + as_tensor(noise.draw("layer0", 200, 4, width, t)), atol=1e-5)
    assert not torch.allclose(currents[0], currents[1])  # a fresh draw per step


def test_snn_post_noise_is_added_to_the_spikes_fed_forward():
    model, x = small_snn(), torch.rand(4, 784)
    noise = NoiseSpec(0.3, "post", seed=1)
    spikes, fed = [], []
    handles = [capture(model.neurons[0], spikes, "out"), capture(model.linears[1], fed, "in")]
    with torch.no_grad():
        model(x, noise, start=0)
    for h in handles:
        h.remove()
    width = model.linears[0].out_features
    for t, (spk, inp) in enumerate(zip(spikes, fed)):
        assert set(spk.unique().tolist()) <= {0.0, 1.0}  # the neuron itself still emits clean spikes
        assert torch.allclose(inp, spk + as_tensor(noise.draw("layer0", 0, 4, width, t)), atol=1e-5)


def test_noisy_predictions_do_not_depend_on_batch_size():
    model, x = small_snn(), np.random.default_rng(0).random((9, 784), dtype=np.float32)
    noise = NoiseSpec(0.5, "pre", seed=2)
    assert np.allclose(suite_logits(model, x, noise, batch_size=4), suite_logits(model, x, noise, batch_size=9), atol=1e-5)
    assert not np.allclose(suite_logits(model, x, noise, batch_size=9), suite_logits(model, x, None, batch_size=9))


def test_noise_is_refused_in_training_and_absent_from_fit():
    model = small_snn(steps=2)
    model.train()
    with pytest.raises(SnnbenchError, match="evaluation only"):
        model(torch.rand(2, 784), NoiseSpec(0.1, "pre"))
    currents, outputs = [], []
    handles = [capture(model.neurons[0], currents, "in"), model.linears[0].register_forward_hook(
        lambda _, __, out: outputs.append(out.detach().clone()))]
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    y = np.arange(20) % 10
    fit(model, (x, y), (x[:0], y[:0]), Recipe(epochs=1, batch_size=10))
    for h in handles:
        h.remove()
    assert len(currents) == 4  # 2 batches x 2 steps
    assert all(torch.equal(c, o) for c, o in zip(currents, outputs))


def test_rate_encoding_feeds_binary_spikes_and_predicts_reproducibly():
    torch.manual_seed(0)
    model = SpikingMLP(ModelSpec(modality="image", size="S/3", steps=3, encoding="rate")).eval()
    inputs = []
    handle = capture(model.linears[0], inputs, "in")
    x = np.random.default_rng(0).random((6, 784), dtype=np.float32)
    first = suite_logits(model, x, batch_size=6)
    handle.remove()
    assert len(inputs) == 3 and all(set(i.unique().tolist()) <= {0.0, 1.0} for i in inputs)
    assert not torch.equal(inputs[0], inputs[1])  # a fresh Poisson draw each step
    assert np.array_equal(first, suite_logits(model, x, batch_size=6))


def test_rate_encoding_draws_what_snntorch_spikegen_draws():
    x = torch.rand(20, 30) * 1.4 - 0.2  # clipped to [0, 1] by both
    torch.manual_seed(3)
    expected = torch.stack([spikegen.rate(x, num_steps=1)[0] for _ in range(3)])
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(torch.stack([encode(x, "rate", generator) for _ in range(3)]), expected)
    torch.manual_seed(3)
    assert torch.equal(torch.stack([encode(x, "rate") for _ in range(3)]), expected)


def test_spike_count_readout_trains_with_another_surrogate():
    torch.manual_seed(0)
    model = SpikingMLP(ModelSpec(modality="image", size="S/3", steps=4, readout="spikes", surrogate="fast_sigmoid"))
    scores = model(torch.rand(5, 784) * 3)
    assert torch.all((scores >= 0) & (scores <= 4)) and torch.equal(scores, scores.round())
    scores.sum().backward()  # the surrogate gives the spike counts a gradient
    assert model.linears[0].weight.grad.abs().sum() > 0


# --- neuron_scan: snntorch Leaky's arithmetic over all steps at once (the grid trainer's neuron) -----------------

def leaky_reference(current: torch.Tensor, neuron: str, reset: str, surrogate_name: str, output: bool = False):
    """snntorch's own Leaky, stepped through ``current`` (T, ...): stacked spikes and membranes."""
    cell = make_neuron(neuron, reset, 0.9, surrogate_name, output=output)
    mem, spikes, membranes = torch.zeros_like(current[0]), [], []
    for cur in current:
        spk, mem = cell(cur, mem)
        spikes.append(spk)
        membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes)


@pytest.mark.parametrize("surrogate_name", ["atan", "fast_sigmoid", "sigmoid", "triangular", "straight_through"])
@pytest.mark.parametrize("neuron,reset,output", [("lif", "soft", False), ("lif", "hard", False), ("if", "soft", False),
                                                 ("if", "hard", False), ("lif", "soft", True), ("if", "soft", True)])
def test_neuron_scan_matches_snntorch_leaky(neuron, reset, output, surrogate_name):
    """Spikes and membranes equal Leaky's exactly (same operations, same order); the input-current
    gradient of a loss on both equals autograd through Leaky up to float32 summation order."""
    generator = torch.Generator().manual_seed(7)
    current = (torch.rand(6, 5, 11, generator=generator) * 1.6 - 0.3).requires_grad_()
    weights = torch.randn(2, 6, 5, 11, generator=generator)
    spikes, membranes = leaky_reference(current, neuron, reset, surrogate_name, output)
    (expected,) = torch.autograd.grad((spikes * weights[0]).sum() + (membranes * weights[1]).sum(), current)
    beta = torch.tensor(1.0 if neuron == "if" else 0.9)
    hard = torch.tensor(float(reset == "hard" and not output))
    soft = torch.tensor(float(reset == "soft" and not output))
    scan_spikes, scan_membranes = neuron_scan(current.transpose(0, 1), beta, hard, soft, surrogate_name)
    assert 0 < int(spikes.sum()) < spikes.numel()  # the inputs make neurons fire, and not always
    assert torch.equal(scan_spikes.transpose(0, 1), spikes)
    assert torch.equal(scan_membranes.transpose(0, 1), membranes)
    (got,) = torch.autograd.grad((scan_spikes.transpose(0, 1) * weights[0]).sum()
                                 + (scan_membranes.transpose(0, 1) * weights[1]).sum(), current)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_sigmoid_surrogate_stays_finite_far_below_threshold():
    """snntorch's sigmoid derivative, 25 exp(-25x) / (exp(-25x) + 1)^2, overflows to NaN below
    x = -3.55 in float32 (a network trained with it then learns nothing); the scan's equals its
    float64 value everywhere."""
    x = torch.tensor([-40.0, -10.0, -4.0, -1.0, -0.05, 0.0, 0.05, 1.0, 10.0])
    exact = 25 * torch.sigmoid(25 * x.double()) * (1 - torch.sigmoid(25 * x.double()))
    assert torch.allclose(surrogate_slope("sigmoid", x).double(), exact, rtol=1e-5, atol=1e-30)
    current = torch.full((1, 3, 2, 4), -5.0, requires_grad=True)  # membranes far below threshold
    spikes, membranes = neuron_scan(current, torch.tensor(0.9), torch.tensor(0.0), torch.tensor(1.0), "sigmoid")
    (spikes.sum() + membranes.sum()).backward()
    assert current.grad.isfinite().all()


def test_neuron_scan_gives_each_stacked_model_its_own_decay_and_reset():
    current = torch.rand(4, 5, 3, 7) * 1.5  # (models, steps, batch, neurons)
    settings = [("lif", "soft"), ("lif", "hard"), ("if", "soft"), ("if", "hard")]
    beta = torch.tensor([1.0 if n == "if" else 0.9 for n, _ in settings]).view(4, 1, 1)
    hard = torch.tensor([float(r == "hard") for _, r in settings]).view(4, 1, 1)
    spikes, membranes = neuron_scan(current, beta, hard, 1 - hard)
    for g, (neuron, reset) in enumerate(settings):
        expected_spikes, expected_membranes = leaky_reference(current[g], neuron, reset, "atan")
        assert torch.equal(spikes[g], expected_spikes) and torch.equal(membranes[g], expected_membranes)
