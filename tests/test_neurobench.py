"""The snntorch engine's activity metrics against the ``neurobench`` package's own (2.3.0), on one
SpikingMLP and the same MNIST training images.

NeuroBench counts through hooks: a forward pre-hook on every ``Linear`` (its input at each call,
here each time step) and a forward hook on every snntorch neuron module (its spikes, and its
membrane before and after each call). ``SNNTorchModel(custom_forward=True)`` calls its network
once per batch, so :class:`AllSteps` hands it ``SpikingMLP.simulate``: the very ``Linear`` and
``Leaky`` modules, each called once per step. Where the definitions agree the numbers are equal;
where they differ on purpose the test asserts the exact relation that the difference implies.
"""

import pytest
import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import (ActivationSparsity, ClassificationAccuracy, MembraneUpdates,
                                         SynapticOperations)
from neurobench.models import SNNTorchModel
from torch import nn

from snnbench.engines.pytorch import SnntorchModel
from snnbench.evaluation.harness import evaluate
from snnbench.models.multimodal import ModelSpec, SpikingMLP
from snnbench.noise import NoiseSpec

from conftest import require_data

SAMPLES, STEPS, SEED = 64, 4, 0
GAINS = (6.0, 4.0, 4.0)  # weight scales that make every layer fire (default init barely spikes)


class AllSteps(nn.Module):
    """(batch, features) -> the readout's (steps, batch, classes) trace, for custom_forward; its
    children are the SpikingMLP's modules, so NeuroBench's hooks find them. Sample indices (which
    key the noise) and the rate encoder's seed as SnntorchModel sets them."""

    def __init__(self, mlp: SpikingMLP, noise: NoiseSpec):
        super().__init__()
        self.mlp, self.noise, self.start = mlp, noise, 0

    def forward(self, x):
        if self.start == 0 and self.mlp.spec.encoding == "rate":
            torch.manual_seed(SEED)  # here, not before run(): the DataLoader draws from torch's generator
        trace = self.mlp.simulate(x, self.noise, self.start)
        self.start += len(x)
        return trace["mem"][-1] if self.mlp.spec.readout == "membrane" else trace["spk"][-1]


@pytest.fixture(scope="module")
def images():
    require_data()
    from snnbench.data.multimodal import load_features

    data = load_features("image", "train")
    return data.x[:SAMPLES], data.y[:SAMPLES]


def spiking_mlp(neuron: str, reset: str, encoding: str, readout: str) -> SpikingMLP:
    torch.manual_seed(SEED)
    mlp = SpikingMLP(ModelSpec("image", "snn", "S/3", steps=STEPS, neuron=neuron, reset=reset,
                               encoding=encoding, readout=readout)).eval()
    with torch.no_grad():
        for linear, gain in zip(mlp.linears, GAINS):
            linear.weight.mul_(gain)
            linear.weight.mul_(torch.rand_like(linear.weight) > 0.3)  # pruned: fan-outs are not layer widths
        mlp.linears[0].weight[0] = 0  # a silent neuron: no input, no bias, its membrane never changes
        mlp.linears[0].bias[0] = 0
    return mlp


def neurobench_row(mlp: SpikingMLP, x, y, noise: NoiseSpec, batch: int) -> dict:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y)),
                                         batch_size=batch)
    scores = (lambda out: out.mean(1)) if mlp.spec.readout == "membrane" else (lambda out: out.sum(1))
    bench = Benchmark(SNNTorchModel(AllSteps(mlp, noise), custom_forward=True), loader, [],
                      [lambda out: scores(out).argmax(1)],
                      [[], [ClassificationAccuracy, ActivationSparsity, SynapticOperations, MembraneUpdates]])
    with torch.no_grad():
        return bench.run(quiet=True)


@torch.no_grad()
def trace_counts(mlp: SpikingMLP, x, noise: NoiseSpec, batch: int) -> dict:
    """What our row leaves out, counted on the traces of the batches SnntorchModel runs."""
    if mlp.spec.encoding == "rate":
        torch.manual_seed(SEED)
    counts = {"readout_active": 0, "unchanged": 0, "hidden_active": 0}
    for a in range(0, len(x), batch):
        trace = mlp.simulate(torch.as_tensor(x[a: a + batch]), noise, a)
        counts["readout_active"] += int((trace["spk"][-1] != 0).sum())
        counts["hidden_active"] += sum(int((s != 0).sum()) for s in trace["spk"][:-1])
        counts["unchanged"] += sum(int((m[1:] == m[:-1]).sum()) for m in trace["mem"])
    return counts


# (neuron, reset, encoding, readout), noise, batch size: two unequal batches where it is 40 (sums
# over batches; NeuroBench's sparsity is a batch-weighted mean), one batch of 64 otherwise (its
# synaptic count re-binarises every weight matrix at every call: time goes with the calls)
CASES = {
    "lif-direct-membrane": (("lif", "soft", "direct", "membrane"), NoiseSpec(), 40),
    "noise-pre": (("lif", "soft", "direct", "membrane"), NoiseSpec(0.5, "pre", seed=3), 64),
    "noise-post": (("lif", "soft", "direct", "membrane"), NoiseSpec(0.2, "post", seed=3), 64),
    "noise-input": (("lif", "soft", "direct", "membrane"), NoiseSpec(0.2, "input", seed=3), 64),
    "if-rate-spikes": (("if", "hard", "rate", "spikes"), NoiseSpec(), 40),
}


@pytest.mark.parametrize("case", CASES)
def test_snntorch_engine_counts_as_neurobench_does(images, case):
    knobs, noise, batch = CASES[case]
    x, y = images
    mlp = spiking_mlp(*knobs)
    ours = evaluate(SnntorchModel(mlp, batch_size=batch, seed=SEED), x, y, noise)
    theirs = neurobench_row(mlp, x, y, noise, batch)
    extra = trace_counts(mlp, x, noise, batch)
    n, hidden, outputs = len(x), 2 * mlp.spec.hidden_width, mlp.linears[-1].out_features
    synapses = [int((linear.weight != 0).sum()) for linear in mlp.linears]  # nonzero weights per layer
    ops = theirs["SynapticOperations"]

    # real activity in every layer, or the comparison proves little
    assert 0.05 < extra["hidden_active"] / (n * STEPS * hidden) < 0.6 and extra["readout_active"] > 0
    # the same predictions (NeuroBench's per-batch accuracy is a float32 mean: 1e-6, far below 1 / n)
    assert theirs["ClassificationAccuracy"] == pytest.approx(ours["accuracy"], abs=1e-6)

    # Dense: NeuroBench sums every Linear call, one per step; ours is one pass (per step)
    assert ops["Dense"] == STEPS * ours["dense_macs_per_sample"]

    # Activation sparsity: NeuroBench hooks every snntorch neuron, the readout's too (a membrane
    # readout's Leaky still emits threshold crossings, which nothing reads); ours: hidden layers only
    assert extra["hidden_active"] == pytest.approx((1 - ours["activation_sparsity"]) * n * STEPS * hidden)
    assert theirs["ActivationSparsity"] == pytest.approx(
        1 - (extra["hidden_active"] + extra["readout_active"]) / (n * STEPS * (hidden + outputs)), abs=1e-12)

    # Membrane updates: both count every neuron (readout included) at the first step; after it
    # NeuroBench counts a neuron only where its membrane changed, ours every neuron every step
    assert ours["membrane_updates_per_sample"] == STEPS * (hidden + outputs)
    assert theirs["MembraneUpdates"] == pytest.approx(ours["membrane_updates_per_sample"] - extra["unchanged"] / n,
                                                      rel=1e-12)
    if not noise.applies_to("pre"):
        assert extra["unchanged"] >= n * (STEPS - 1)  # the silent neuron, at least

    # Synaptic operations. A Linear's input is an AC where it is all 0/±1 (spikes), a MAC otherwise;
    # each nonzero input x its nonzero weights, bias left out, on both sides. Noise is added for a
    # robustness test, not work the network does: our counts read the encoded input and the
    # neurons' outputs before any noise; NeuroBench's hooks see what the next Linear receives.
    macs, acs = ours["effective_macs_per_sample"], ours["effective_acs_per_sample"]
    assert acs > 0 and (macs > 0) == (mlp.spec.encoding == "direct")
    if noise.applies_to("input"):  # every input is nonzero once noise is added: each synapse a MAC
        assert ops["Effective_MACs"] == STEPS * synapses[0] > macs
        assert ops["Effective_ACs"] == pytest.approx(acs, rel=1e-12)
    elif noise.applies_to("post"):  # spikes plus noise are real numbers: the hidden layers' synapses are MACs
        assert ops["Effective_MACs"] == pytest.approx(macs + STEPS * sum(synapses[1:]), rel=1e-12)
        assert ops["Effective_ACs"] == 0
    else:  # no noise, or noise on the input currents (it changes the spikes, not what they are)
        assert ops["Effective_MACs"] == pytest.approx(macs, rel=1e-12)
        assert ops["Effective_ACs"] == pytest.approx(acs, rel=1e-12)
