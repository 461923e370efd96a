"""Spiking pieces of the multimodal family: snntorch neurons, input encodings and noise injection.

Neurons are snntorch ``Leaky`` modules: ``lif`` leaks with decay ``beta``, ``if`` is the same
neuron with no leak (beta 1). Reset ``soft`` subtracts the threshold after a spike, ``hard``
sets the membrane to zero. The surrogate gradient is one of snntorch's (``atan`` is its default).
"""

import numpy as np
import snntorch as snn
import torch
from snntorch import spikegen, surrogate

from snnbench.errors import SnnbenchError
from snnbench.noise import NoiseSpec

NEURONS = ("lif", "if")
RESETS = {"soft": "subtract", "hard": "zero"}
ENCODINGS = ("direct", "rate")
READOUTS = ("membrane", "spikes")
SURROGATES = {
    "atan": surrogate.atan,
    "fast_sigmoid": surrogate.fast_sigmoid,
    "sigmoid": surrogate.sigmoid,
    "triangular": surrogate.triangular,
    "straight_through": surrogate.straight_through_estimator,
}


def check_choice(kind: str, value: str, choices):
    if value not in choices:
        raise SnnbenchError(f"unknown {kind} {value!r}; use one of {', '.join(choices)}")


def make_neuron(neuron: str = "lif", reset: str = "soft", beta: float = 0.9,
                surrogate_name: str = "atan", output: bool = False) -> snn.Leaky:
    """A layer of snntorch neurons. ``output=True`` gives a non-resetting membrane readout."""
    check_choice("neuron", neuron, NEURONS)
    check_choice("reset", reset, RESETS)
    check_choice("surrogate gradient", surrogate_name, SURROGATES)
    if not 0.0 < beta <= 1.0:
        raise SnnbenchError(f"beta (membrane decay) must be in (0, 1], got {beta}")
    return snn.Leaky(beta=1.0 if neuron == "if" else beta, spike_grad=SURROGATES[surrogate_name](),
                     reset_mechanism="none" if output else RESETS[reset])


def encode(x: torch.Tensor, encoding: str) -> torch.Tensor:
    """The input at one time step: the features themselves (direct) or Poisson spikes (rate)."""
    return x if encoding == "direct" else spikegen.rate(x.clamp(0, 1), num_steps=1)[0]


def add_noise(tensor: torch.Tensor, noise: NoiseSpec | None, position: str, layer: str,
              start: int, step: int) -> torch.Tensor:
    """``tensor`` plus the shared noise draw for (layer, samples from ``start``, step), when
    ``noise`` applies at ``position``; ``tensor`` unchanged otherwise."""
    if noise is None or not noise.applies_to(position):
        return tensor
    draw = noise.draw(layer, start, tensor.shape[0], tensor.shape[1], step)
    return tensor + torch.from_numpy(np.ascontiguousarray(draw)).to(tensor.device, tensor.dtype)
