"""The stacked network: many models of one shape as one set of stacked tensors."""

import numpy as np
import torch

from snnbench.models.multimodal import ModelSpec, SpikingMLP, build_model
from snnbench.models.spiking import NoiseDraws, decay, encode, neuron_scan, scan_kernel

SPLIT_K_FROM = 2048  # inputs at least this long are multiplied in chunks
NO_NOISE = NoiseDraws(None, "cpu")  # adds nothing anywhere (so never draws, on any device)


def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    layers = model.linears if isinstance(model, SpikingMLP) else model
    return [m for m in layers if isinstance(m, torch.nn.Linear)]


def _stack(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    return torch.stack(tensors).to(device).requires_grad_()


def split_k(k: int, chunk: int = 512) -> int:
    """Chunks to cut an input of ``k`` features into: the divisor of ``k`` nearest (by ratio)
    to ``k / chunk``; 1 for short inputs."""
    if k < SPLIT_K_FROM:
        return 1
    divisors = [d for d in range(1, k + 1) if k % d == 0]
    return min(divisors, key=lambda d: abs(np.log(d * chunk / k)))


class StackedNet:
    """``G`` members of the family with one shape, as stacked tensors: weights ``(G, in, out)``
    (each layer's ``weight.T``, so that neither the products nor their weight gradients need a
    transposed copy), biases ``(G, out)``; per member a membrane decay and a reset kind (SNN).
    Rate-encoded input spikes come from one generator per member (``generators``, each drawing
    what that member alone draws from torch's own generator), or from torch's own (``None``)."""

    def __init__(self, specs: list[ModelSpec], models: list[torch.nn.Module], device: torch.device,
                 scan: str = "eager"):
        self.scan = scan_kernel(scan, device)
        self.specs, self.spec, self.device = specs, specs[0], device
        layers = list(zip(*(_linears(m) for m in models)))  # per layer, every member's Linear
        self.weights = [_stack([linear.weight.detach().T for linear in layer], device) for layer in layers]
        self.biases = [_stack([linear.bias.detach() for linear in layer], device) for layer in layers]
        shape = (len(specs), 1, 1)  # broadcasts against one time step (G, batch, width)
        self.beta = torch.tensor([decay(s.neuron, s.beta) for s in specs], device=device).view(shape)
        self.hard = torch.tensor([float(s.reset == "hard") for s in specs], device=device).view(shape)
        self.soft = 1 - self.hard
        self.no_reset = torch.zeros_like(self.hard)  # the membrane readout
        self.generators: list[torch.Generator] | None = None

    def __len__(self):
        return len(self.specs)

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    @staticmethod
    def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x @ weight + bias`` per member: ``(G, rows, in)`` x ``(G, in, out)`` -> ``(G, rows, out)``.
        A long input (fused and audio features) is cut into chunks whose products are summed, so
        the few output tiles of a batch of 100 are shared out over many more thread blocks."""
        g, rows, k = x.shape
        split = split_k(k)
        if split == 1:
            return torch.baddbmm(bias.unsqueeze(1), x, weight)
        chunk = k // split
        xs = x.reshape(g, rows, split, chunk).transpose(1, 2).reshape(g * split, rows, chunk)
        return torch.bmm(xs, weight.reshape(g * split, chunk, -1)).view(g, split, rows, -1).sum(1) + bias.unsqueeze(1)

    def forward(self, x: torch.Tensor, noise: NoiseDraws | None = None, start: int = 0) -> torch.Tensor:
        """Scores ``(G, batch, classes)`` for inputs ``(G, batch, features)`` (each member its own
        batch); ``noise`` adds the evaluation noise of samples ``start ..`` as the engines do."""
        return (self._dnn if self.spec.family == "dnn" else self._snn)(x, noise or NO_NOISE, start)

    def _dnn(self, x, noise, start):
        h = noise.add(x, "input", "input", start, 0)
        for i in range(len(self.weights) - 1):
            h = noise.add(self._affine(h, self.weights[i], self.biases[i]), "pre", f"layer{i}", start, 0)
            h = noise.add(torch.relu(h), "post", f"layer{i}", start, 0)
        return self._affine(h, self.weights[-1], self.biases[-1])

    def _snn(self, x, noise, start):
        steps = self.spec.steps
        if self.spec.encoding == "rate" or noise.spec.applies_to("input"):
            current = self._every_step(torch.stack([self._input(x, noise, start, t) for t in range(steps)], 1), 0)
        else:  # direct encoding: the same input current at every step, computed once
            current = self._affine(x, self.weights[0], self.biases[0])
        h = None  # the hidden layers' spikes
        for i in range(len(self.weights) - 1):
            if i > 0:
                current = self._every_step(h, i)
            if noise.spec.applies_to("pre"):  # a direct current (G, batch, width) is every step's
                current = torch.stack([noise.add(current if current.dim() == 3 else current[:, t], "pre",
                                                 f"layer{i}", start, t) for t in range(steps)], 1)
            h, _ = self._scan(current, self.hard, self.soft)
            if noise.spec.applies_to("post"):
                h = torch.stack([noise.add(h[:, t], "post", f"layer{i}", start, t) for t in range(steps)], 1)
        current = self._every_step(h, -1)
        if self.spec.readout == "membrane":
            return self._scan(current, self.no_reset, self.no_reset)[1].mean(1)
        return self._scan(current, self.hard, self.soft)[0].sum(1)

    def _every_step(self, h, layer):
        """Layer ``layer``'s input currents ``(G, T, batch, out)`` from its inputs ``(G, T, batch, in)``."""
        g, steps, b = h.shape[:3]
        return self._affine(h.reshape(g, steps * b, -1), self.weights[layer], self.biases[layer]).view(g, steps, b, -1)

    def _input(self, x, noise, start, t):
        """The network's input at step ``t``: encoded (snnbench.models.spiking.encode), then noised."""
        if self.spec.encoding == "rate":
            x = (encode(x, "rate") if self.generators is None
                 else torch.stack([encode(member, "rate", gen) for member, gen in zip(x, self.generators)]))
        return noise.add(x, "input", "input", start, t)

    def _scan(self, current, hard, soft):
        steps = self.spec.steps if current.dim() == 3 else None  # a direct current: the same at every step
        return neuron_scan(current, self.beta, hard, soft, self.spec.surrogate, self.scan, steps)

    def member(self, index: int, tensors: list[torch.Tensor]) -> torch.nn.Module:
        """Member ``index`` as the family's own model (on the CPU), with the stacked weights
        ``tensors`` (in :meth:`parameters` order)."""
        model = build_model(self.specs[index])
        with torch.no_grad():
            for i, linear in enumerate(_linears(model)):
                out, n_in = linear.weight.shape
                linear.weight.copy_(tensors[2 * i][index, :n_in, :out].T.detach().cpu())
                linear.bias.copy_(tensors[2 * i + 1][index, :out].detach().cpu())
        return model.eval()
