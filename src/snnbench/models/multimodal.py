"""The multimodal suite's network family: one fully connected classifier for image, audio and
fused (concatenated) inputs, as a DNN (ReLU) or an SNN (snntorch neurons, surrogate gradients).

Size is a parameter budget, ``S`` (1,600,000), ``S/2`` or ``S/3``, that the hidden width is solved
for. The DNN is a plain ``nn.Sequential`` of Linear / ReLU (ONNX: Gemm + Relu).

Evaluation-only noise follows :mod:`snnbench.noise`: layer keys ``"input"`` and ``"layer{i}"``
(i-th hidden layer), ``start`` = global index of the batch's first sample, step = time step
(0 for the DNN). Training never passes noise; a model in training mode refuses it.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from snnbench.config import check_choice, check_choices, option, positive
from snnbench.data import MODALITIES, feature_size
from snnbench.errors import ConfigError
from snnbench.models.spiking import (ENCODINGS, NEURONS, READOUTS, RESETS, SURROGATES, NoiseDraws, encode,
                                     make_neuron)
from snnbench.noise import NoiseSpec

S = 1_600_000
SIZES = {"S": 1.0, "S/2": 0.5, "S/3": 1.0 / 3.0}
FAMILIES = ("dnn", "snn")
N_CLASSES = 10
SNN_FIELDS = ("neuron", "beta", "reset", "steps", "surrogate", "encoding", "readout")


@dataclass(frozen=True)
class ModelSpec:
    """One member of the family. SNN fields are ignored (and not reported) for a DNN."""

    modality: str = "multimodal"
    family: str = "snn"
    size: str = option("S", "parameter budget (S = 1,600,000)", choices=tuple(SIZES))
    hidden_layers: int = option(2, "hidden Linear layers", positive(int))
    neuron: str = option("lif", "lif (leaky) or if (no leak)", choices=NEURONS)
    beta: float = option(0.9, "LIF membrane decay (in (0, 1])", positive(float))
    reset: str = option("soft", "soft (subtract) or hard (to zero)", choices=tuple(RESETS))
    steps: int = option(4, "SNN time steps", positive(int))
    surrogate: str = option("atan", "surrogate gradient", choices=tuple(SURROGATES))
    encoding: str = option("direct", "direct (features as current each step) or rate (Poisson spikes)",
                           choices=ENCODINGS)
    readout: str = option("membrane", "membrane (mean output membrane) or spikes (output spike count)",
                          choices=READOUTS)

    def __post_init__(self):
        check_choice("modality", self.modality, MODALITIES)
        check_choice("family", self.family, FAMILIES)
        check_choices(self)
        if self.hidden_layers < 1:
            raise ConfigError(f"hidden_layers must be >= 1, got {self.hidden_layers}")
        if self.steps < 1:
            raise ConfigError(f"time steps must be >= 1, got {self.steps}")
        make_neuron(self.neuron, self.reset, self.beta, self.surrogate)  # validates the neuron knobs

    @property
    def n_features(self) -> int:
        return feature_size(self.modality)

    @property
    def hidden_width(self) -> int:
        return solve_hidden_width(self.n_features, int(round(S * SIZES[self.size])), self.hidden_layers)

    @property
    def layer_sizes(self) -> list[int]:
        """Features, each hidden layer's width, classes."""
        return [self.n_features] + [self.hidden_width] * self.hidden_layers + [N_CLASSES]

    def as_dict(self) -> dict:
        """The fields that define the model (no SNN knobs for a DNN)."""
        return {k: v for k, v in asdict(self).items() if self.family == "snn" or k not in SNN_FIELDS}


def mlp_parameters(n_features: int, width: int, hidden_layers: int, n_classes: int = N_CLASSES) -> int:
    return (n_features + 1) * width + (hidden_layers - 1) * (width + 1) * width + (width + 1) * n_classes


def solve_hidden_width(n_features: int, target: int, hidden_layers: int = 2) -> int:
    """The hidden width whose parameter count is closest to ``target`` (counts grow with width)."""
    low, high = 1, 1
    while mlp_parameters(n_features, high, hidden_layers) < target:
        high *= 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if mlp_parameters(n_features, mid, hidden_layers) < target else (low, mid)
    return min((low, high), key=lambda w: abs(mlp_parameters(n_features, w, hidden_layers) - target))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _evaluation_noise(model: nn.Module, noise: NoiseSpec | None, device: torch.device) -> NoiseDraws:
    if model.training and noise is not None and noise.active:
        raise ConfigError("noise is for evaluation only; call model.eval() before adding noise")
    return NoiseDraws(noise, device)


class SpikingMLP(nn.Module):
    """Linear layers feeding snntorch neurons, run for ``steps`` time steps.

    Scores are the output layer's mean membrane potential (``membrane`` readout, a non-resetting
    neuron) or its spike count (``spikes`` readout, output neurons that fire and reset).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        sizes = spec.layer_sizes
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.neurons = nn.ModuleList(make_neuron(spec.neuron, spec.reset, spec.beta, spec.surrogate)
                                     for _ in range(spec.hidden_layers))
        self.readout = make_neuron(spec.neuron, spec.reset, spec.beta, spec.surrogate,
                                   output=spec.readout == "membrane")

    def simulate(self, x: torch.Tensor, noise: NoiseSpec | None = None, start: int = 0) -> dict:
        """Run all time steps; returns scores, per-layer membrane / spike traces (T, B, H) and the
        encoded input of every step, before any input noise (``input``, (T, B, features))."""
        draws = _evaluation_noise(self, noise, x.device)
        mems = [None] * (len(self.neurons) + 1)
        trace = {"mem": [[] for _ in mems], "spk": [[] for _ in mems]}
        inputs = []
        for t in range(self.spec.steps):
            inputs.append(encode(x, self.spec.encoding))
            h = draws.add(inputs[-1], "input", "input", start, t)
            for i, (linear, neuron) in enumerate(zip(self.linears, self.neurons)):
                current = draws.add(linear(h), "pre", f"layer{i}", start, t)
                h, mems[i] = neuron(current, mems[i] if mems[i] is not None else torch.zeros_like(current))
                trace["mem"][i].append(mems[i])
                trace["spk"][i].append(h)
                h = draws.add(h, "post", f"layer{i}", start, t)
            current = self.linears[-1](h)
            spikes, mems[-1] = self.readout(current, mems[-1] if mems[-1] is not None else torch.zeros_like(current))
            trace["mem"][-1].append(mems[-1])
            trace["spk"][-1].append(spikes)
        stacked = {k: [torch.stack(v) for v in layers] for k, layers in trace.items()}
        scores = stacked["mem"][-1].mean(0) if self.spec.readout == "membrane" else stacked["spk"][-1].sum(0)
        return {"scores": scores, **stacked, "input": torch.stack(inputs)}

    def forward(self, x: torch.Tensor, noise: NoiseSpec | None = None, start: int = 0) -> torch.Tensor:
        return self.simulate(x, noise, start)["scores"]


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh, untrained member of the family."""
    if spec.family == "snn":
        return SpikingMLP(spec)
    sizes = spec.layer_sizes
    hidden = [layer for n_in, n_out in zip(sizes[:-2], sizes[1:-1]) for layer in (nn.Linear(n_in, n_out), nn.ReLU())]
    return nn.Sequential(*hidden, nn.Linear(*sizes[-2:]))


def dnn_forward(model: nn.Sequential, x: torch.Tensor, noise: NoiseSpec | None = None,
                start: int = 0) -> torch.Tensor:
    """The DNN's forward pass with noise at the input, before (pre) or after (post) each ReLU."""
    draws = _evaluation_noise(model, noise, x.device)
    h = draws.add(x, "input", "input", start, 0)
    hidden = 0
    for layer in model:
        if isinstance(layer, nn.ReLU):
            h = draws.add(h, "pre", f"layer{hidden}", start, 0)
            h = draws.add(layer(h), "post", f"layer{hidden}", start, 0)
            hidden += 1
        else:
            h = layer(h)
    return h
