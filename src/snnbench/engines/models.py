"""The engines: each a :class:`snnbench.evaluation.harness.Model`.

* :class:`OrtModel`: a DNN in ONNX Runtime (noise inserted into a copy of its graph; its hidden
  ReLU outputs read as extra graph outputs for the activity metrics);
* :class:`NengoModel`: the converted spiking network, nengo-dl or nengo's reference simulator;
* :class:`SnntorchModel`: the multimodal suite's snntorch SNN;
* :class:`TorchModel`: the suite's DNN in PyTorch (the one it was trained as).
"""

from pathlib import Path

import numpy as np
import torch

from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model
from snnbench.noise import NoiseSpec


def _count_fan_out(weight: np.ndarray) -> np.ndarray:
    """Per input of a dense (out, in) weight matrix: how many outputs it reaches."""
    return (np.asarray(weight) != 0).sum(axis=0).astype(np.float64)


# --------------------------------------------------------------------------- ONNX Runtime (DNN)

class OrtModel(Model):
    """A feed-forward ONNX DNN. Activity: its ReLU outputs (nonzero activations, effective MACs)."""
    engine = "ort-dnn"

    def __init__(self, onnx_path, batch_size: int = 1000):
        from snnbench.conversion import onnx_io

        self.path = Path(onnx_path)
        # weights and fan-outs (one population per ONNX Relu: MaxPool read as its window's
        # connectivity, not as the exact route's extra populations); unsupported ops fail here
        self.converted = onnx_io.extract(self.path, maxpool="average")
        self.batch_size = batch_size
        self._runners = {}
        self._fan_outs = [self.converted.fan_out(i) for i in range(onnx_io.INPUT, len(self.converted.hidden))]

    def weights(self):
        return [a for op in self.converted.linear_ops() for a in (op.weight, op.bias) if a is not None]

    def _runner(self, position: str):
        """A runner whose graph also outputs every hidden activation (and noise inputs at ``position``)."""
        if position not in self._runners:
            import onnx
            from onnx import helper

            from snnbench.conversion.onnx_noise import ACTIVATIONS, add_noise
            from snnbench.engines.runners import OrtRunner

            graph = add_noise(self.path, position) if position != "none" else None
            proto = graph.model if graph else onnx.load(str(self.path))
            hidden = [n.output[0] for n in proto.graph.node if n.op_type in ACTIVATIONS]
            proto.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in hidden)
            self._runners[position] = (OrtRunner(proto.SerializeToString(), self.batch_size), graph)
        return self._runners[position]

    def predict(self, x, noise=CLEAN, start=0):
        runner, graph = self._runner(noise.position if noise.active else "none")
        if graph is not None:
            runner.feeds = graph.feeds(noise)
        outputs = runner.predict_outputs(x, start)
        logits, hidden = outputs[0], [h.reshape(len(x), -1) for h in outputs[1:]]
        nonzero = [h != 0 for h in hidden]
        macs = float(((np.asarray(x) != 0) @ self._fan_outs[0]).sum())
        macs += sum(float((a @ f).sum()) for a, f in zip(nonzero, self._fan_outs[1:]))
        active = float(sum(a.sum() for a in nonzero))
        self.last_activity = M.Activity(len(x), 1, sum(h.shape[1] for h in hidden), active, active, macs, 0.0,
                                        0.0, float(self.converted.macs()))
        return logits


# --------------------------------------------------------------------------- Nengo (converted SNN)

class NengoModel(Model):
    """The converted network run by nengo-dl (or nengo). One simulator per noise position, built
    on first use and given each further noise setting at that position at run time."""
    engine = "nengo-snn"

    def __init__(self, converted, layers, sim, counters: bool = True):
        from snnbench.conversion.onnx_io import load_any

        self.converted = load_any(converted)
        self.layers, self.sim, self.counters = layers, sim, counters
        self.steps = sim.steps
        self._runners = {}

    def weights(self):
        return [a for op in self.converted.linear_ops() for a in (op.weight, op.bias) if a is not None]

    def runner(self, noise: NoiseSpec):
        from snnbench.engines.runners import NengoRunner

        key = noise.position if noise.active and noise.position != "input" else "none"
        if key not in self._runners:
            self._runners[key] = NengoRunner(self.converted, self.layers, self.sim, noise, counters=self.counters)
        runner = self._runners[key]
        runner.noise = noise
        return runner

    def predict(self, x, noise=CLEAN, start=0):
        runner = self.runner(noise)
        logits = runner.predict(x, start)
        self.last_activity = self.activity(runner.last_stats, len(x))
        return logits

    def activity(self, s: dict, n: int) -> M.Activity | None:
        """The Activity of ``n`` samples from a runner's ``last_stats`` (None without counters)."""
        if not s:
            return None
        steps = self.sim.steps
        neurons = sum(stage.size_out for stage in self.converted.hidden)
        spikes = s["spikes_per_sample"] * n
        # neuron-steps with at least one spike: counted by the runner where it can, else every spike
        active = s.get("active_per_sample", s["spikes_per_sample"]) * n
        return M.Activity(n, steps, neurons, active, spikes, s["input_macs_per_sample"] * n,
                          s["synaptic_acs_per_sample"] * n, float(n * steps * neurons), float(self.converted.macs()))

    def close(self):
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- PyTorch (the suite's nets)

def _numpy_weights(module: torch.nn.Module) -> list[np.ndarray]:
    return [p.detach().cpu().numpy() for p in module.parameters()]


class SnntorchModel(Model):
    """The suite's snntorch SNN (snnbench.models.multimodal.SpikingMLP). Activity from its traces:
    hidden spikes x fan-out (ACs), the nonzero direct-encoded input x fan-out every step (MACs) or
    the rate-encoded input's spikes x fan-out (ACs); tests/test_neurobench.py checks it all
    against the neurobench package."""
    engine = "snntorch-snn"

    def __init__(self, model, device="cpu", batch_size: int = 500, seed: int = 0):
        self.model = model.to(device).eval()
        self.device, self.batch_size, self.seed = torch.device(device), batch_size, seed
        self.steps = model.spec.steps
        self._fan_outs = [_count_fan_out(linear.weight.detach().cpu().numpy()) for linear in model.linears]

    def weights(self):
        return _numpy_weights(self.model)

    @torch.no_grad()
    def predict(self, x, noise=CLEAN, start=0):
        if self.model.spec.encoding == "rate":
            torch.manual_seed(self.seed)  # rate-encoded input spikes
        steps, outputs = self.steps, []
        active = spikes = macs = acs = 0.0
        neurons = sum(linear.out_features for linear in self.model.linears[:-1])
        for a in range(0, len(x), self.batch_size):
            xb = np.asarray(x[a: a + self.batch_size], np.float32)
            trace = self.model.simulate(torch.as_tensor(xb, device=self.device), noise, start + a)
            outputs.append(trace["scores"].float().cpu().numpy())
            # the encoded input's nonzero entries (direct: every feature every step; rate: its spikes)
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
        n = len(x)
        output_neurons = self.model.linears[-1].out_features
        dense = float(sum(linear.in_features * linear.out_features for linear in self.model.linears))
        self.last_activity = M.Activity(n, steps, neurons, active, spikes, macs, acs,
                                        float(n * steps * (neurons + output_neurons)), dense)
        return np.concatenate(outputs) if outputs else np.zeros((0, output_neurons), np.float32)


class TorchModel(Model):
    """The suite's DNN (nn.Sequential of Linear / ReLU) in PyTorch, noise as snnbench.noise says."""
    engine = "torch-dnn"

    def __init__(self, model: torch.nn.Sequential, device="cpu", batch_size: int = 1000):
        self.model = model.to(device).eval()
        self.device, self.batch_size = torch.device(device), batch_size
        self.linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        self._fan_outs = [_count_fan_out(linear.weight.detach().cpu().numpy()) for linear in self.linears]

    def weights(self):
        return _numpy_weights(self.model)

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
        neurons = sum(linear.out_features for linear in self.linears[:-1])
        dense = float(sum(linear.in_features * linear.out_features for linear in self.linears))
        self.last_activity = M.Activity(len(x), 1, neurons, active, active, macs, 0.0, 0.0, dense)
        return np.concatenate(outputs) if outputs else np.zeros((0, self.linears[-1].out_features), np.float32)


def suite_model(model, device="cpu", seed: int = 0) -> Model:
    """The harness model of a trained member of the multimodal family (SNN or DNN)."""
    from snnbench.models.multimodal import SpikingMLP

    return SnntorchModel(model, device, seed=seed) if isinstance(model, SpikingMLP) else TorchModel(model, device)
