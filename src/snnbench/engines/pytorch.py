"""Engines ``snntorch-snn`` and ``torch-dnn``: the multimodal suite's snntorch SNN
(:class:`SnntorchModel`) and DNN (:class:`TorchModel`), and the converted network with snntorch IF
neurons (:class:`ConvertedSnntorchModel`, snnbench throughput's backend).
"""

import numpy as np
import torch

from snnbench.engines import converted_layers, register
from snnbench.errors import ConfigError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model


class _SuiteModel(Model):
    """A net of the multimodal suite: its linear layers' fan-outs (nonzero synapses per input) and
    sizes; its parameters are the weights."""

    def __init__(self, model, linears: list, device, batch_size: int):
        self.model = model.to(device).eval()
        self.device, self.batch_size, self.linears = torch.device(device), batch_size, linears
        self._fan_outs = [(linear.weight.detach().cpu().numpy() != 0).sum(axis=0).astype(np.float64)
                          for linear in linears]
        self.hidden_neurons = sum(linear.out_features for linear in linears[:-1])
        self.dense_macs = float(sum(linear.in_features * linear.out_features for linear in linears))

    def weights(self):
        return [p.detach().cpu().numpy() for p in self.model.parameters()]

    def _logits(self, outputs: list) -> np.ndarray:
        return np.concatenate(outputs) if outputs else np.zeros((0, self.linears[-1].out_features), np.float32)


class SnntorchModel(_SuiteModel):
    """The suite's SpikingMLP. Activity from its traces: hidden spikes x fan-out (ACs), the nonzero
    direct-encoded input x fan-out every step (MACs) or the rate-encoded input's spikes x fan-out
    (ACs); tests/test_neurobench.py checks it against the neurobench package."""
    engine = "snntorch-snn"

    def __init__(self, model, device="cpu", batch_size: int = 500, seed: int = 0):
        super().__init__(model, model.linears, device, batch_size)
        self.seed, self.steps = seed, model.spec.steps

    @torch.no_grad()
    def predict(self, x, noise=CLEAN, start=0):
        if self.model.spec.encoding == "rate":
            torch.manual_seed(self.seed)  # rate-encoded input spikes
        steps, outputs, neurons = self.steps, [], self.hidden_neurons
        active = spikes = macs = acs = 0.0
        for a in range(0, len(x), self.batch_size):
            xb = np.asarray(x[a: a + self.batch_size], np.float32)
            trace = self.model.simulate(torch.as_tensor(xb, device=self.device), noise, start + a)
            outputs.append(trace["scores"].float().cpu().numpy())
            presented = (trace["input"] != 0).sum(dim=(0, 1)).double().cpu().numpy()
            input_ops = float(presented @ self._fan_outs[0])
            if self.model.spec.encoding == "direct":
                macs += input_ops
            else:
                acs += input_ops
            for spk, fan_out in zip(trace["spk"][:-1], self._fan_outs[1:]):
                per_neuron = spk.sum(dim=(0, 1)).double().cpu().numpy()
                active += float((spk != 0).sum())
                spikes += float(per_neuron.sum())
                acs += float(per_neuron @ fan_out)
        n, output_neurons = len(x), self.linears[-1].out_features
        self.last_activity = M.Activity(n, steps, neurons, active, spikes, macs, acs,
                                        float(n * steps * (neurons + output_neurons)), self.dense_macs)
        return self._logits(outputs)


class TorchModel(_SuiteModel):
    """The suite's DNN (nn.Sequential of Linear / ReLU)."""
    engine = "torch-dnn"

    def __init__(self, model: torch.nn.Sequential, device="cpu", batch_size: int = 1000):
        super().__init__(model, [m for m in model if isinstance(m, torch.nn.Linear)], device, batch_size)

    @torch.no_grad()
    def predict(self, x, noise=CLEAN, start=0):
        from snnbench.models.multimodal import dnn_forward

        hidden = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: hidden.append(out)) for m in self.model
                 if isinstance(m, torch.nn.ReLU)]
        outputs, active, macs = [], 0.0, 0.0
        try:
            for a in range(0, len(x), self.batch_size):
                xb = np.asarray(x[a: a + self.batch_size], np.float32)
                hidden.clear()
                outputs.append(dnn_forward(self.model, torch.as_tensor(xb, device=self.device), noise,
                                           start + a).float().cpu().numpy())
                macs += float(((xb != 0) @ self._fan_outs[0]).sum())
                for h, fan_out in zip(hidden, self._fan_outs[1:]):
                    nonzero = (h != 0).cpu().numpy()
                    active += float(nonzero.sum())
                    macs += float((nonzero @ fan_out).sum())
        finally:
            for hook in hooks:
                hook.remove()
        self.last_activity = M.Activity(len(x), 1, self.hidden_neurons, active, active, macs, 0.0, 0.0, self.dense_macs)
        return self._logits(outputs)


def torch_layer(op) -> torch.nn.Module:
    """A converted linear op (dense, conv or avgpool on flat vectors) as a torch module."""
    if op.kind == "dense":
        layer = torch.nn.Linear(op.size_in, op.size_out)
        layer.weight.data = torch.as_tensor(op.weight)
        layer.bias.data = torch.as_tensor(op.bias)
        return layer
    if op.kind == "conv":
        inner = torch.nn.Conv2d(op.in_shape[0], op.out_shape[0], op.kernel, op.strides, padding=op.padding)
        inner.weight.data = torch.as_tensor(op.weight)
        inner.bias.data = torch.as_tensor(op.bias)
    else:
        inner = torch.nn.AvgPool2d(op.kernel, op.strides)
    return torch.nn.Sequential(torch.nn.Unflatten(1, tuple(op.in_shape)), inner, torch.nn.Flatten())


class ConvertedSnntorch(torch.nn.Module):
    """The converted network with snntorch IF neurons (no leak, reset by subtraction, threshold 1,
    starting at half the threshold): layer ``i`` integrates ``rate_scale_i * dt`` times its input
    current and passes on ``1 / (rate_scale_i * dt)`` per spike; scores are the output layer's mean
    over ``steps``. Unlike Nengo's IF, a snntorch neuron fires at most once per step."""

    def __init__(self, converted, steps: int, layers: list, dt: float = 0.001):
        super().__init__()
        from snnbench.models.spiking import make_neuron

        stages = converted.stages
        self.layers = torch.nn.ModuleList(torch.nn.Sequential(*map(torch_layer, s.ops)) for s in stages)
        self.neurons = torch.nn.ModuleList(make_neuron("if", "soft") for s in stages[:-1])
        self.scales = torch.nn.ParameterList(  # per neuron: calibration may scale each channel (moves with .to)
            torch.nn.Parameter(torch.as_tensor(p.rate_scale * dt * p.per_neuron(s, "channel_scales", 1.0),
                                               dtype=torch.float32), requires_grad=False)
            for p, s in zip(layers, stages))
        self.steps = steps

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mems = [None] * len(self.neurons)
        total = 0.0
        for _ in range(self.steps):
            h = x
            for i, (neuron, scale) in enumerate(zip(self.neurons, self.scales)):
                current = scale * self.layers[i](h)
                if mems[i] is None:
                    mems[i] = torch.full_like(current, 0.5)
                spikes, mems[i] = neuron(current, mems[i])
                h = spikes / scale
            total = total + self.layers[-1](h)
        return total / self.steps


class ConvertedSnntorchModel(Model):
    """:class:`ConvertedSnntorch` as a harness model (clean inputs only; no activity recorded)."""
    engine = "snntorch-snn"

    def __init__(self, converted, layers, steps: int, dt: float = 0.001, device="cpu"):
        self.converted, self.steps, self.device = converted, steps, torch.device(device)
        self.network = ConvertedSnntorch(converted, steps, layers, dt).to(self.device).eval()

    def predict(self, x, noise=CLEAN, start=0):
        if noise.active:
            raise ConfigError("the converted network on snntorch runs on clean inputs only")
        x = torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), -1), device=self.device)
        return self.network(x).cpu().numpy()  # .cpu() waits for the device


@register("snntorch-snn")
def build_snn(artifact, device="cpu", batch_size: int = 500, seed: int = 0, layers=None, steps: int = 8,
              dt: float = 0.001, calibration_inputs=None) -> Model:
    """The suite's SNN (a torch module), or the converted network (a converted model, or its files)."""
    if isinstance(artifact, torch.nn.Module):
        return SnntorchModel(artifact, device, batch_size, seed)
    converted, layers = converted_layers(artifact, layers, calibration_inputs, seed, dt)
    return ConvertedSnntorchModel(converted, layers, steps, dt, device)


@register("torch-dnn")
def build_dnn(artifact, device="cpu", batch_size: int = 1000) -> TorchModel:
    return TorchModel(artifact, device, batch_size)


def suite_engine(model) -> str:
    """The engine of a trained member of the multimodal family (SNN or DNN)."""
    from snnbench.models.multimodal import SpikingMLP

    return "snntorch-snn" if isinstance(model, SpikingMLP) else "torch-dnn"
