"""Engines ``snntorch-snn`` and ``torch-dnn``: the multimodal suite's snntorch SNN
(:class:`SnntorchModel`) and DNN (:class:`TorchModel`), and the converted network with snntorch IF
neurons (:class:`ConvertedSnntorchModel`, snnbench throughput's backend).
"""

import numpy as np
import torch

from snnbench.engines import SNNTORCH_SNN, TORCH_DNN, converted_layers, register
from snnbench.errors import ConfigError, UnsupportedModelError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model


class _SuiteModel(Model):
    """A net of the multimodal suite, run in batches. Activity: the presented input's nonzero entries
    and the hidden layers' events (spikes; a DNN's nonzero activations), each x its fan-out (nonzero
    synapses per input). Its parameters are the weights."""
    spiking = False  # a spiking net: its hidden events are spikes (ACs), every neuron updates every step
    input_op = "macs"  # what an input entry x its fan-out counts as: "macs" or "acs"

    def __init__(self, model, linears: list, device, batch_size: int):
        self.model = model.to(device).eval()
        self.device, self.batch_size, self.linears = torch.device(device), batch_size, linears
        self._fan_outs = [(linear.weight.detach().cpu().numpy() != 0).sum(axis=0).astype(np.float64)
                          for linear in linears]
        self.dense_macs = float(sum(linear.in_features * linear.out_features for linear in linears))

    def weights(self):
        return [p.detach().cpu().numpy() for p in self.model.parameters()]

    def _run(self, x: torch.Tensor, noise, start: int) -> tuple:
        """(scores, presented input (steps, n, features), hidden events [(steps, n, neurons)]) of a batch."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x, noise=CLEAN, start=0):
        outputs, ops = [], {"macs": 0.0, "acs": 0.0}
        active = spikes = 0.0
        for a in range(0, len(x), self.batch_size):
            xb = torch.as_tensor(np.asarray(x[a: a + self.batch_size], np.float32), device=self.device)
            scores, presented, hidden = self._run(xb, noise, start + a)
            outputs.append(scores.float().cpu().numpy())
            entries = (presented != 0).sum(dim=(0, 1)).double().cpu().numpy()
            ops[self.input_op] += float(entries @ self._fan_outs[0])
            for events, fan_out in zip(hidden, self._fan_outs[1:]):
                per_neuron = events.sum(dim=(0, 1)).double().cpu().numpy()
                active += float((events != 0).sum())
                spikes += float(per_neuron.sum())
                ops["acs" if self.spiking else "macs"] += float(per_neuron @ fan_out)
        n, steps, neurons = len(x), self.steps, sum(linear.out_features for linear in self.linears[:-1])
        updates = n * steps * (neurons + self.linears[-1].out_features) if self.spiking else 0.0
        self.last_activity = M.Activity(n, steps, neurons, active, spikes, ops["macs"], ops["acs"], float(updates),
                                        self.dense_macs)
        return np.concatenate(outputs) if outputs else np.zeros((0, self.linears[-1].out_features), np.float32)


class SnntorchModel(_SuiteModel):
    """The suite's SpikingMLP: hidden spikes are ACs, the input's entries MACs every step (direct
    encoding) or ACs (rate encoding: its spikes); tests/test_neurobench.py checks the counts against
    the neurobench package."""
    engine = SNNTORCH_SNN
    spiking = True

    def __init__(self, model, device="cpu", batch_size: int = 500, seed: int = 0):
        super().__init__(model, model.linears, device, batch_size)
        self.seed, self.steps = seed, model.spec.steps
        self.input_op = "macs" if model.spec.encoding == "direct" else "acs"

    def predict(self, x, noise=CLEAN, start=0):
        if self.input_op == "acs":
            torch.manual_seed(self.seed)  # rate-encoded input spikes
        return super().predict(x, noise, start)

    def _run(self, x, noise, start):
        trace = self.model.simulate(x, noise, start)
        return trace["scores"], trace["input"], trace["spk"][:-1]


class TorchModel(_SuiteModel):
    """The suite's DNN (nn.Sequential of Linear / ReLU)."""
    engine = TORCH_DNN

    def __init__(self, model: torch.nn.Sequential, device="cpu", batch_size: int = 1000):
        super().__init__(model, [m for m in model if isinstance(m, torch.nn.Linear)], device, batch_size)

    def _run(self, x, noise, start):
        from snnbench.models.multimodal import dnn_forward

        hidden = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: hidden.append(out)) for m in self.model
                 if isinstance(m, torch.nn.ReLU)]
        try:
            scores = dnn_forward(self.model, x, noise, start)
        finally:
            for hook in hooks:
                hook.remove()
        return scores, x[None], [(h != 0)[None] for h in hidden]


def torch_layer(op) -> torch.nn.Module:
    """A converted linear op (dense, conv, avgpool or pad) as a torch module on flat vectors."""
    if op.kind == "dense":
        layer = torch.nn.Linear(op.size_in, op.size_out)
        layer.weight.data, layer.bias.data = torch.as_tensor(op.weight), torch.as_tensor(op.bias)
        return layer
    if op.kind == "avgpool":
        image = [torch.nn.AvgPool2d(op.kernel, op.strides)]
    elif op.kind in ("conv", "pad"):
        top, left, bottom, right = op.pads
        image = [torch.nn.ZeroPad2d((left, right, top, bottom))]
        if op.kind == "conv":
            conv = torch.nn.Conv2d(op.in_shape[0], op.out_shape[0], op.kernel, op.strides, dilation=op.dilations,
                                   groups=op.groups, bias=op.bias is not None)
            conv.weight.data = torch.as_tensor(op.weight)
            if op.bias is not None:
                conv.bias.data = torch.as_tensor(op.bias)
            image.append(conv)
    else:
        raise UnsupportedModelError(f"the converted network on snntorch runs dense, conv, pad and average-pool "
                                    f"layers, not {op.kind!r} ones: run it on nengo-snn")
    return torch.nn.Sequential(torch.nn.Unflatten(1, tuple(op.in_shape)), *image, torch.nn.Flatten())


class ConvertedSnntorch(torch.nn.Module):
    """The converted network with snntorch IF neurons (no leak, reset by subtraction, threshold 1,
    starting at half the threshold): layer ``i`` integrates ``rate_scale_i * dt`` times its input
    current and passes on ``1 / (rate_scale_i * dt)`` per spike; scores are the output layer's mean
    over ``steps``. Unlike Nengo's IF, a snntorch neuron fires at most once per step."""

    def __init__(self, converted, steps: int, layers: list, dt: float = 0.001):
        super().__init__()
        from snnbench.models.spiking import make_neuron

        stages = converted.stages
        bounded = [s.name for s in stages if s.upper is not None]
        if bounded:
            raise UnsupportedModelError(f"the converted network on snntorch has no bounded (Clip) layers, but "
                                        f"{', '.join(bounded)} are: run it on nengo-snn")
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
    engine = SNNTORCH_SNN

    def __init__(self, converted, layers, steps: int, dt: float = 0.001, device="cpu"):
        self.converted, self.steps, self.device = converted, steps, torch.device(device)
        self.network = ConvertedSnntorch(converted, steps, layers, dt).to(self.device).eval()

    def predict(self, x, noise=CLEAN, start=0):
        if noise.active:
            raise ConfigError("the converted network on snntorch runs on clean inputs only")
        x = torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), -1), device=self.device)
        return self.network(x).cpu().numpy()  # .cpu() waits for the device


@register(SNNTORCH_SNN)
def build_snn(artifact, device="cpu", batch_size: int = 500, seed: int = 0, layers=None, steps: int = 8,
              dt: float = 0.001, calibration_inputs=None) -> Model:
    """The suite's SNN (a torch module), or the converted network (a converted model, or its files)."""
    if isinstance(artifact, torch.nn.Module):
        return SnntorchModel(artifact, device, batch_size, seed)
    converted, layers = converted_layers(artifact, layers, calibration_inputs, seed, dt)
    return ConvertedSnntorchModel(converted, layers, steps, dt, device)


@register(TORCH_DNN)
def build_dnn(artifact, device="cpu", batch_size: int = 1000) -> TorchModel:
    return TorchModel(artifact, device, batch_size)


def suite_engine(model) -> str:
    """The engine of a trained member of the multimodal family (SNN or DNN)."""
    from snnbench.models.multimodal import SpikingMLP

    return SNNTORCH_SNN if isinstance(model, SpikingMLP) else TORCH_DNN
