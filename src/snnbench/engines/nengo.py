"""Engine ``nengo-snn``: the converted spiking network on nengo-dl (batched) or nengo's reference
simulator (:class:`NengoRunner`), as a harness model (:class:`NengoModel`)."""

import time
import warnings
from contextlib import AbstractContextManager

import numpy as np

from snnbench.conversion.nengo_net import (LayerParams, SimConfig, build_network, layer_list, readout,
                                           register_nengo_dl_neurons)
from snnbench.conversion.onnx_io import ConvertedModel, load_any
from snnbench.engines import converted_layers, register
from snnbench.errors import ConfigError, DataError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model
from snnbench.noise import NoiseSpec

class NengoRunner(AbstractContextManager):
    """The converted network on one simulator, built on the first prediction and kept until
    :meth:`close` (or ``with``). ``predict(x, start=0)`` takes flat float32 inputs ``(n, features)``,
    ``start`` keying the noise draws as in :mod:`snnbench.evaluation.harness`.

    After each prediction ``last_stats`` holds the activity over ``sim.steps`` steps: firing rates,
    synaptic operations per sample (ACs = hidden spikes x fan-out; the non-spiking input layer's
    MACs = nonzero pixels x fan-out, every step), (neuron, step) outputs with a spike per sample, and
    the share of spiking neurons that fire more than once in some step (an IF neuron may).
    """

    def __init__(self, model_dir_or_converted, layers: LayerParams | list = LayerParams(),
                 sim: SimConfig = SimConfig(), noise: NoiseSpec | None = None, counters: bool = True):
        self.model: ConvertedModel = load_any(model_dir_or_converted)
        self.layers = layer_list(layers, len(self.model.hidden))
        self.sim, self.noise, self.counters = sim, noise or NoiseSpec(), counters
        self.last_stats: dict = {}
        self.last_seconds = 0.0
        self._simulator = self._net = None
        self._neuron_probes, self._feed, self._profile = [], {}, np.zeros(2)

    def predict(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        return self.predict_curve(x, [self.sim.steps], start)[self.sim.steps]

    def predict_curve(self, x: np.ndarray, steps_list, start: int = 0) -> dict:
        """Logits for several step counts from one simulation of ``max(steps_list)`` steps."""
        steps_list = sorted({int(s) for s in steps_list})
        if not steps_list or steps_list[0] < 1:
            raise ConfigError(f"step counts must be >= 1, got {steps_list}")
        started = time.perf_counter()
        self._profile = np.zeros(2)
        outputs, counts = self._simulate(np.asarray(x, np.float32), max(steps_list + [self.sim.steps]), start)
        self.last_seconds = time.perf_counter() - started
        self.last_stats = self._stats(x, counts, self._profile)
        return {s: readout(outputs, s, self.sim.readout) for s in steps_list}

    def close(self):
        if self._simulator is not None and hasattr(self._simulator, "close"):
            self._simulator.close()
        self._simulator = None

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _build(self):
        if self._simulator is not None:
            return
        import nengo

        positions = (self.noise.position,) if self.noise.active and self.noise.position in ("pre", "post") else ()
        if positions:
            from snnbench.conversion.onnx_noise import check_hidden_layers

            check_hidden_layers(self.model)  # layer{i} is the same layer here as in ONNX Runtime
        dl = self.sim.simulator == "nengo_dl"
        with warnings.catch_warnings():
            # nengo derives max rates from the given gains / biases; meaningless here
            warnings.filterwarnings("ignore", message=".*max_rates.*")
            warnings.filterwarnings("ignore", message="invalid value encountered in log1p")
            warnings.filterwarnings("ignore", message=".*channels_last=False on the CPU.*")
            if dl:
                from snnbench.conversion.nengo_compat import import_nengo_dl
                nengo_dl = import_nengo_dl()
                register_nengo_dl_neurons(nengo_dl)
                import tensorflow as tf
                tf.get_logger().setLevel("ERROR")  # each simulator traces its own graph: not a retracing bug
            self._net = build_network(self.model, self.layers, self.sim, positions,
                                      node_output=None if dl else self._node_reader, counters=self.counters)
            self._neuron_probes = []
            if self.counters:  # each hidden layer's output per neuron and step (spike counts)
                with self._net.network:
                    self._neuron_probes = [nengo.Probe(ens.neurons, synapse=None) for ens in self._net.ensembles]
            if dl:
                self._simulator = nengo_dl.Simulator(self._net.network, dt=self.sim.dt, progress_bar=False,
                                                     minibatch_size=self.sim.minibatch, seed=self.sim.seed)
            else:
                self._simulator = nengo.Simulator(self._net.network, dt=self.sim.dt, progress_bar=False,
                                                  seed=self.sim.seed)

    def _node_reader(self, key: str, size: int):
        def output(t):
            values = self._feed.get(key)
            if values is None:  # nengo calls the function once while building
                return np.zeros(size)
            return values[min(max(int(round(t / self.sim.dt)) - 1, 0), len(values) - 1)]
        return output

    def _feeds(self, x: np.ndarray, start: int, n_steps: int) -> dict:
        """Per-step input arrays ``(n, n_steps, size)`` by feed key, noise included."""
        n = len(x)
        feeds = {"input": np.repeat(x[:, None, :], n_steps, axis=1)}
        if self.noise.applies_to("input"):
            feeds["input"] += self.noise.draws("input", start, n, x.shape[1], n_steps)
        feeds.update({key: self.noise.draws(key.split(":")[1], start, n, node.size_out, n_steps)
                      for key, node in self._net.inputs.items() if ":" in key})  # noise nodes, "pre:layer0" etc.
        return feeds

    def _simulate(self, x: np.ndarray, n_steps: int, start: int):
        if x.ndim != 2 or x.shape[1] != self.model.n_inputs:
            raise DataError(f"inputs must have shape (n, {self.model.n_inputs}), got {x.shape}")
        self._build()
        run = self._run_batch_dl if self.sim.simulator == "nengo_dl" else self._run_batch_reference
        batch = self.sim.minibatch
        batches = [run(x[a: a + batch], start + a, n_steps) for a in range(0, len(x), batch)]
        if not batches:
            return np.zeros((0, n_steps, self.model.n_outputs), np.float32), []
        outputs, counts = zip(*batches)
        return np.concatenate(outputs), [np.concatenate(c) for c in zip(*counts)]

    def _run_batch_dl(self, x: np.ndarray, start: int, n_steps: int):
        n, pad = len(x), self.sim.minibatch - len(x)
        feeds = self._feeds(x, start, n_steps)
        data = {self._net.inputs[k]: np.pad(v, ((0, pad), (0, 0), (0, 0))) for k, v in feeds.items()}
        result = self._simulator.predict_on_batch(data, n_steps=n_steps)
        counts = [result[p][:n] for p in self._net.counters]
        self._profile += self._spike_profile([result[p][:n] for p in self._neuron_probes])
        return result[self._net.output][:n], counts

    def _run_batch_reference(self, x: np.ndarray, start: int, n_steps: int):
        feeds = self._feeds(x, start, n_steps)
        outputs, counts = [], []
        for i in range(len(x)):
            self._feed = {k: v[i] for k, v in feeds.items()}
            self._simulator.reset(seed=self.sim.seed)
            self._simulator.run_steps(n_steps)
            outputs.append(self._simulator.data[self._net.output])
            counts.append([self._simulator.data[p] for p in self._net.counters])
            self._profile += self._spike_profile([self._simulator.data[p][None] for p in self._neuron_probes])
        return np.stack(outputs), [np.stack(c) for c in zip(*counts)]

    def _spike_profile(self, outputs: list) -> np.ndarray:
        """[(neuron, step) outputs with a spike, spiking neurons x samples that fire more than once
        in some step] over the first ``sim.steps`` steps, from each layer's ``(n, T, neurons)`` output."""
        active = multi = 0.0
        for out, params in zip(outputs, self.layers):
            events = out[:, :self.sim.steps] * (params.rate_scale * self.sim.dt)  # spikes (rates: expected)
            active += float((events > 1e-6).sum())
            if params.spiking:
                multi += float((np.round(events) > 1).any(axis=1).sum())
        return np.array([active, multi])

    def _stats(self, x: np.ndarray, counts: list, profile: np.ndarray) -> dict:
        if not self.counters or not counts or len(x) == 0:
            return {}
        steps, n = self.sim.steps, len(x)
        sizes = [stage.size_out for stage in self.model.hidden]
        spikes = [float(c[:, :steps, 0].sum()) for c in counts]
        acs = sum(float(c[:, :steps, 1].sum()) for c in counts)
        input_macs = steps * float(((np.asarray(x) != 0) @ self._net.input_fan_out).mean())
        per_neuron_step = sum(spikes) / (n * steps * sum(sizes))
        stats = {"spikes_per_neuron_per_step": per_neuron_step,
                 "mean_firing_rate_hz": per_neuron_step / self.sim.dt,
                 "spikes_per_sample": sum(spikes) / n,
                 "synaptic_acs_per_sample": acs / n,
                 "input_macs_per_sample": input_macs,
                 "synaptic_ops_per_sample": acs / n + input_macs,
                 "active_per_sample": profile[0] / n}
        spiking = sum(size for size, params in zip(sizes, self.layers) if params.spiking)
        if spiking:
            stats["multi_spike_neuron_share"] = profile[1] / (n * spiking)
        for i, (s, size) in enumerate(zip(spikes, sizes)):
            stats[f"layer{i}_firing_rate_hz"] = s / (n * steps * size) / self.sim.dt
        return stats


class NengoModel(Model):
    """The converted network as a harness model: one runner per noise position, built on first use
    and given each further noise setting at that position."""
    engine = "nengo-snn"

    def __init__(self, converted, layers, sim, counters: bool = True):
        self.converted = load_any(converted)
        self.layers, self.sim, self.counters = layers, sim, counters
        self.steps = sim.steps
        self._runners = {}

    def runner(self, noise: NoiseSpec):
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
        return M.Activity(n, steps, neurons, s["active_per_sample"] * n, s["spikes_per_sample"] * n,
                          s["input_macs_per_sample"] * n, s["synaptic_acs_per_sample"] * n, float(n * steps * neurons),
                          float(self.converted.macs()))

    def close(self):
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()


@register("nengo-snn")
def build(artifact, layers=None, sim: SimConfig = SimConfig(), counters: bool = True,
          calibration_inputs=None) -> NengoModel:
    converted, layers = converted_layers(artifact, layers, calibration_inputs, sim.seed, sim.dt)
    return NengoModel(converted, layers, sim, counters)
