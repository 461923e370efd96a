"""The stacked network: many models of one shape as one set of stacked tensors."""

import numpy as np
import torch

from snnbench.models.multimodal import ModelSpec, SpikingMLP, build_model
from snnbench.models.spiking import NoiseDraws, decay, encode, neuron_scan, scan_kernel



# --- the stacked network -------------------------------------------------------------------------

def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return list(model.linears) if isinstance(model, SpikingMLP) else [m for m in model if isinstance(m, torch.nn.Linear)]


def _padded_stack(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The members' tensors stacked, each zero-padded at its end to the largest shape. A padded
    hidden neuron has zero weights in and out and a zero bias, so it never spikes (nor passes a
    ReLU) and its gradients are zero: Adam leaves it at zero and the real neurons train exactly
    as they would unpadded, but for float32 summation order over the added zero terms."""
    shape = [max(t.shape[d] for t in tensors) for d in range(tensors[0].dim())]
    padded = [torch.nn.functional.pad(t, [p for d in reversed(range(t.dim())) for p in (0, shape[d] - t.shape[d])])
              for t in tensors]
    return torch.stack(padded).to(device).requires_grad_()


SPLIT_K_FROM = [2048]  # inputs at least this long are multiplied in chunks (0: never)


def split_k(k: int, chunk: int = 512) -> int:
    """Chunks to cut an input of ``k`` features into: the divisor of ``k`` nearest (by ratio)
    to ``k / chunk``; 1 for short inputs."""
    if not SPLIT_K_FROM[0] or k < SPLIT_K_FROM[0]:
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
        layers = [_linears(m) for m in models]
        self.weights = [_padded_stack([ls[i].weight.detach().T for ls in layers], device) for i in range(len(layers[0]))]
        self.biases = [_padded_stack([ls[i].bias.detach() for ls in layers], device) for i in range(len(layers[0]))]
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
        if self.spec.family == "dnn":
            return self._dnn(x, noise, start)
        return self._snn(x, noise, start)

    def _dnn(self, x, noise, start):
        h = noise.add(x, "input", "input", start, 0) if noise else x
        hidden = len(self.weights) - 1
        for i in range(hidden):
            h = self._affine(h, self.weights[i], self.biases[i])
            h = noise.add(h, "pre", f"layer{i}", start, 0) if noise else h
            h = torch.relu(h)
            h = noise.add(h, "post", f"layer{i}", start, 0) if noise else h
        return self._affine(h, self.weights[-1], self.biases[-1])

    def _snn(self, x, noise, start):
        g, b = x.shape[:2]
        steps = self.spec.steps
        if self.spec.encoding == "rate" or (noise and noise.spec.applies_to("input")):
            inputs = torch.stack([self._input(x, noise, start, t) for t in range(steps)], 1)
            current = self._affine(inputs.view(g, steps * b, -1), self.weights[0], self.biases[0]).view(g, steps, b, -1)
        else:  # direct encoding: the same input current at every step, computed once
            current = self._affine(x, self.weights[0], self.biases[0])
        hidden = len(self.weights) - 1
        h = None  # the hidden layers' spikes
        for i in range(hidden):
            if i > 0:
                current = self._affine(h.reshape(g, steps * b, -1), self.weights[i], self.biases[i]).view(g, steps, b, -1)
            if noise and noise.spec.applies_to("pre"):
                current = torch.stack([noise.add(self._at(current, t), "pre", f"layer{i}", start, t)
                                       for t in range(steps)], 1)
            h, _ = self._scan(current, self.hard, self.soft)
            if noise and noise.spec.applies_to("post"):
                h = torch.stack([noise.add(h[:, t], "post", f"layer{i}", start, t) for t in range(steps)], 1)
        current = self._affine(h.reshape(g, steps * b, -1), self.weights[-1], self.biases[-1]).view(g, steps, b, -1)
        if self.spec.readout == "membrane":
            return self._scan(current, self.no_reset, self.no_reset)[1].mean(1)
        return self._scan(current, self.hard, self.soft)[0].sum(1)

    def _input(self, x, noise, start, t):
        """The network's input at step ``t``: encoded (snnbench.models.spiking.encode), then noised."""
        if self.spec.encoding == "rate":
            x = (encode(x, "rate") if self.generators is None
                 else torch.stack([encode(member, "rate", gen) for member, gen in zip(x, self.generators)]))
        return noise.add(x, "input", "input", start, t) if noise else x

    @staticmethod
    def _at(current, t):
        return current if current.dim() == 3 else current[:, t]  # a direct current is every step's

    def _scan(self, current, hard, soft):
        direct = current.dim() == 3  # (G, batch, width): the same at every step
        return neuron_scan(current, self.beta, hard, soft, self.spec.surrogate, self.scan,
                           self.spec.steps if direct else None)

    def member(self, index: int, tensors: list[torch.Tensor] | None = None) -> torch.nn.Module:
        """Member ``index`` as the family's own model (on the CPU), with the stacked weights
        ``tensors`` (default: the current ones), in :meth:`parameters` order."""
        tensors = self.parameters() if tensors is None else tensors
        model = build_model(self.specs[index])
        with torch.no_grad():
            for i, linear in enumerate(_linears(model)):
                out, n_in = linear.weight.shape
                linear.weight.copy_(tensors[2 * i][index, :n_in, :out].T.detach().cpu())
                linear.bias.copy_(tensors[2 * i + 1][index, :out].detach().cpu())
        return model.eval()
