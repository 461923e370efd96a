"""Spiking pieces of the multimodal family: snntorch neurons, input encodings and noise injection.

Neurons are snntorch ``Leaky`` modules: ``lif`` leaks with decay ``beta``, ``if`` does not (beta 1);
reset ``soft`` subtracts the threshold after a spike, ``hard`` sets the membrane to zero.
:func:`neuron_scan` is ``Leaky`` over all time steps of a layer at once, for stacked models: in a
feed-forward network a layer's currents for every step are known once the layer below has run.
"""

import importlib.util
import inspect

import numpy as np
import snntorch as snn
import torch
from snntorch import surrogate

from snnbench.config import check_choice
from snnbench.errors import ConfigError
from snnbench.noise import NoiseSpec

NEURONS = ("lif", "if")
THRESHOLD = inspect.signature(snn.Leaky).parameters["threshold"].default  # snntorch's, kept by make_neuron
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


def decay(neuron: str, beta: float) -> float:
    return 1.0 if neuron == "if" else beta


def make_neuron(neuron: str = "lif", reset: str = "soft", beta: float = 0.9,
                surrogate_name: str = "atan", output: bool = False) -> snn.Leaky:
    """A layer of snntorch neurons. ``output=True`` gives a non-resetting membrane readout."""
    check_choice("neuron", neuron, NEURONS)
    check_choice("reset", reset, RESETS)
    check_choice("surrogate gradient", surrogate_name, SURROGATES)
    if not 0.0 < beta <= 1.0:
        raise ConfigError(f"beta (membrane decay) must be in (0, 1], got {beta}")
    return snn.Leaky(beta=decay(neuron, beta), spike_grad=SURROGATES[surrogate_name](),
                     reset_mechanism="none" if output else RESETS[reset])


class _RateSpikes(torch.autograd.Function):
    """Bernoulli spikes ``s ~ B(p)``; backward the straight-through slope ``ds/dp = 1``, the slope of their
    expectation (BPDA, Athalye et al., ICML 2018), so a gradient attack reaches a rate-encoded input. The
    forward pass is ``torch.bernoulli`` itself, the same draws."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.bernoulli(p, generator=generator)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def encode(x: torch.Tensor, encoding: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The input at one time step: the features themselves (direct) or Poisson spikes (rate):
    Bernoulli draws of the features clipped to [0, 1], as snntorch's ``spikegen.rate`` makes
    them (from ``generator``, default torch's own; tests check the two are equal), differentiable
    straight through (:class:`_RateSpikes`)."""
    return x if encoding == "direct" else _RateSpikes.apply(x.clamp(0, 1), generator)


class NoiseDraws:
    """A :class:`NoiseSpec`'s draws added to torch tensors, the draws kept on the device (a
    stack's members, and the stds of one seed and mode, share them: pass one ``cache``). Unit
    draws are keyed by (layer, step, samples, width); a tensor ``(..., samples, width)`` gets the
    draw of samples ``start ..`` at ``step`` (every leading index the same draw)."""

    def __init__(self, spec: NoiseSpec | None, device: torch.device | str, cache: dict | None = None):
        self.spec, self.device = spec or NoiseSpec(), torch.device(device)
        self.cache = {} if cache is None else cache

    def add(self, tensor: torch.Tensor, position: str, layer: str, start: int, step: int) -> torch.Tensor:
        """``tensor`` plus its draw when the noise applies at ``position``; else ``tensor``."""
        if not self.spec.applies_to(position):
            return tensor
        n, width = tensor.shape[-2:]
        key = (self.spec.seed, layer, self.spec.step(step), start, n, width)
        if key not in self.cache:
            unit = self.spec.unit(layer, start, n, width, step)
            self.cache[key] = torch.from_numpy(np.ascontiguousarray(unit)).to(self.device)
        return tensor + self.cache[key] * self.spec.std


def surrogate_slope(surrogate: str, x: torch.Tensor) -> torch.Tensor:
    """dS/dU of snntorch's surrogate ``surrogate`` (its default parameters) at ``x`` = membrane
    minus threshold: the factor its backward multiplies the incoming gradient by. The sigmoid's is
    taken at ``-|x|`` (it is even): snntorch's ``exp(-25 x)`` overflows to NaN below x = -3.55 in float32."""
    if surrogate == "atan":  # alpha 2
        return 2.0 / 2 / (1 + (torch.pi / 2 * 2.0 * x).pow(2))
    if surrogate == "fast_sigmoid":  # slope 25
        return 1.0 / (25 * torch.abs(x) + 1.0) ** 2
    if surrogate == "sigmoid":  # slope 25
        e = torch.exp(-25 * x.abs())
        return 25 * e / ((e + 1) ** 2)
    if surrogate == "triangular":  # threshold 1: +1 below the threshold, -1 from it on
        return torch.where(x >= 0, -1.0, 1.0).to(x.dtype)
    if surrogate == "straight_through":
        return torch.ones_like(x)
    raise ConfigError(f"unknown surrogate gradient {surrogate!r}; use one of {', '.join(SURROGATES)}")


SCAN_KERNELS = ("eager", "triton")


def scan_kernel(kernel: str, device: torch.device) -> str:
    """The kernel a scan on ``device`` runs (the CPU always eager), checked once: ``triton``
    needs the triton package."""
    check_choice("neuron scan kernel", kernel, SCAN_KERNELS)
    if device.type != "cuda":
        return "eager"
    if kernel == "triton" and importlib.util.find_spec("triton") is None:
        raise ConfigError("--scan triton needs the triton package (PyTorch's CUDA wheels bring it): install it, "
                          "or use --scan eager")
    return kernel


class _LeakyScan(torch.autograd.Function):
    """The eager scan: a few torch operations per time step (dim 1 of ``current``)."""

    @staticmethod
    def forward(ctx, current, beta, hard, soft, surrogate):
        spikes, membranes = [], []
        mem = spk = None
        for cur in current.unbind(1):
            if mem is None:
                mem = cur  # beta x 0 + current - 0: the first step starts from a zero membrane
            else:  # Leaky's reset signal is the previous step's spike (detached); its order of operations
                mem = beta * ((1 - hard * spk) * mem) + cur - soft * spk * THRESHOLD
            spk = (mem - THRESHOLD > 0).to(mem.dtype)
            spikes.append(spk)
            membranes.append(mem)
        spikes, membranes = torch.stack(spikes, 1), torch.stack(membranes, 1)
        ctx.save_for_backward(spikes, membranes, beta, hard)
        ctx.surrogate = surrogate
        return spikes, membranes

    @staticmethod
    def backward(ctx, grad_spikes, grad_membranes):
        """Back through time: each step's spike gradient times its surrogate slope, plus the
        membrane gradient carried from the next step (decay times what the reset kept)."""
        spikes, membranes, beta, hard = ctx.saved_tensors
        grad_spikes = torch.zeros_like(spikes) if grad_spikes is None else grad_spikes
        grad_membranes = torch.zeros_like(membranes) if grad_membranes is None else grad_membranes
        grads = [None] * spikes.shape[1]
        carry = None
        for t in reversed(range(spikes.shape[1])):
            g = grad_membranes[:, t] + grad_spikes[:, t] * surrogate_slope(ctx.surrogate, membranes[:, t] - THRESHOLD)
            if carry is not None:
                g = g + carry
            grads[t] = g
            if t > 0:
                carry = beta * (1 - hard * spikes[:, t - 1]) * g
        return torch.stack(grads, 1), None, None, None, None


def neuron_scan(current: torch.Tensor, beta: torch.Tensor, hard: torch.Tensor, soft: torch.Tensor,
                surrogate: str = "atan", kernel: str = "eager",
                steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """snntorch ``Leaky`` over every time step of ``current`` ``(G, T, ...)`` from a zero
    membrane: returns (spikes, membranes), both ``(G, T, ...)``. With ``steps``, ``current`` is
    a direct input ``(G, ...)``, the same at each of ``steps`` steps.

    ``beta``, ``hard`` and ``soft`` broadcast against one step ``current[:, t]`` (one value per
    stacked model, shaped ``(G, 1, ...)``): ``hard`` 1 resets to zero, ``soft`` 1 subtracts the
    threshold; both 0 is ``reset_mechanism="none"`` (the membrane readout). Forward: Leaky's
    arithmetic in Leaky's order; backward: Leaky's with surrogate ``surrogate`` (:func:`surrogate_slope`).
    ``kernel``: ``eager`` or ``triton`` (CUDA: one kernel each way, snnbench.models.leaky_triton).
    """
    check_choice("neuron scan kernel", kernel, SCAN_KERNELS)
    if kernel == "triton":
        from snnbench.models.leaky_triton import LeakyScan

        return LeakyScan.apply(current, beta, hard, soft, surrogate, steps, THRESHOLD)
    if steps is not None:
        current = current.unsqueeze(1).expand(-1, steps, *current.shape[1:])
    return _LeakyScan.apply(current, beta, hard, soft, surrogate)
