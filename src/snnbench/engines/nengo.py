"""Engine ``nengo-snn``: the converted spiking network on nengo-dl (batched) or nengo's reference
simulator (:class:`NengoRunner`), as a harness model (:class:`NengoModel`)."""

import warnings
from contextlib import AbstractContextManager

import numpy as np

from snnbench.conversion.converted_files import load_any
from snnbench.conversion.graph import INPUT, ConvertedModel
from snnbench.conversion.nengo_net import (LayerParams, SimConfig, build_network, fed_stages, layer_list, readout,
                                           register_nengo_dl_neurons, stage_currents, stage_key)
from snnbench.conversion.neurons import LossyIF, SignedIF
from snnbench.engines import NENGO_SNN, converted_layers, register
from snnbench.errors import ConfigError, DataError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model
from snnbench.noise import NoiseSpec

FEED_CHUNK = 1000  # samples whose currents are computed in one go (fewer, larger products than per minibatch)


class NengoRunner(AbstractContextManager):
    """The converted network on one simulator, built on the first prediction and kept until
    :meth:`close` (or ``with``). ``predict(x, start=0)`` takes flat float32 inputs ``(n, features)``,
    ``start`` keying the noise draws as in :mod:`snnbench.evaluation.harness`.

    The simulated network has no pixel input: the stages that read the input (and, with pre or post
    noise, those the noise reaches) take their current as data (:func:`~snnbench.conversion.nengo_net.
    stage_currents`), computed once per sample unless the noise changes every step. The noise is
    data too: ``noise`` may be set again between predictions, to any setting with the same ``fed``
    stages (:func:`~snnbench.conversion.nengo_net.fed_stages`; ``fed`` defaults to those of ``noise``).

    After each prediction ``last_stats`` holds the activity over ``sim.steps`` steps: firing rates,
    synaptic operations per sample (ACs = hidden spikes x fan-out; the non-spiking input layer's
    MACs = nonzero pixels x fan-out, every step), (neuron, step) outputs with a spike per sample, and
    the share of spiking neurons that fire more than once in some step (an IF neuron may).
    """

    def __init__(self, model_dir_or_converted, layers: LayerParams | list = LayerParams(),
                 sim: SimConfig = SimConfig(), noise: NoiseSpec | None = None, counters: bool = True,
                 fed: tuple | None = None, spike_loss: tuple = (0.0, 0)):
        self.model: ConvertedModel = load_any(model_dir_or_converted)
        self.spike_loss = spike_loss  # (probability, seed): each hidden spike lost on its way out
        self.layers = layer_list(layers, len(self.model.hidden))
        self.sim, self.noise, self.counters = sim, noise or NoiseSpec(), counters
        self.fed = fed_stages(self.model, self.noise.position if self.noise.active else "none") if fed is None else fed
        self.last_stats: dict = {}
        self._simulator = self._net = None
        self._feed = {}

    def predict(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        return self.predict_curve(x, [self.sim.steps], start)[self.sim.steps]

    def predict_curve(self, x: np.ndarray, steps_list, start: int = 0) -> dict:
        """Logits for several step counts from one simulation of ``max(steps_list)`` steps."""
        steps_list = sorted({int(s) for s in steps_list})
        if not steps_list or steps_list[0] < 1:
            raise ConfigError(f"step counts must be >= 1, got {steps_list}")
        x = np.asarray(x, np.float32)
        outputs, activity = self._simulate(x, max(steps_list + [self.sim.steps]), start)
        self.last_stats = self._stats(x, activity)
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
            self._net = build_network(self.model, self.layers, self.sim, None if dl else self._node_reader,
                                      self.counters, self.fed)
            if self.spike_loss[0] > 0:
                self._lose_spikes(*self.spike_loss)
            self._fan_outs = [self.model.fan_out(i) for i in range(len(self.model.hidden))] if self.counters else []
            if dl:
                with self._net.network:
                    # for speed: no training graph, no state kept between calls, and every op on its own
                    # signals (nengo-dl's default planner merges ops, whose signals then share arrays
                    # written by scatter updates: three times slower here, see docs/engine-speed.md)
                    nengo_dl.configure_settings(inference_only=True, stateful=False,
                                                planner=nengo_dl.graph_optimizer.noop_planner)
                self._simulator = nengo_dl.Simulator(self._net.network, dt=self.sim.dt, progress_bar=False,
                                                     minibatch_size=self.sim.minibatch, seed=self.sim.seed)
            else:
                self._simulator = nengo.Simulator(self._net.network, dt=self.sim.dt, progress_bar=False,
                                                  seed=self.sim.seed)

    def _lose_spikes(self, loss: float, seed: int):
        """Every hidden IF neuron's spikes lost with probability ``loss`` (layer ``i``'s draws from ``seed + i``)."""
        for i, ensemble in enumerate(self._net.ensembles):
            if not isinstance(ensemble.neuron_type, SignedIF):
                raise ConfigError(f"spike deletion runs in IF neurons (calibration's neuron if), but layer {i} has "
                                  f"{type(ensemble.neuron_type).__name__} neurons")
            ensemble.neuron_type = LossyIF.of(ensemble.neuron_type, loss, seed + i)

    def _node_reader(self, key: str, size: int):
        def output(t):
            values = self._feed.get(key)
            if values is None:  # nengo calls the function once while building
                return np.zeros(size)
            return values[min(max(int(round(t / self.sim.dt)) - 1, 0), len(values) - 1)]
        return output

    def _feeds(self, x: np.ndarray, start: int, n_steps: int) -> dict:
        """Per-step currents ``(n, n_steps, size)`` by feed key (broadcast views where held over the
        steps), noise included."""
        n, noise = len(x), self.noise
        if noise.active and not set(fed_stages(self.model, noise.position)) <= set(self.fed):
            needed = fed_stages(self.model, noise.position)
            raise ConfigError(f"this simulator takes currents at stages {self.fed}, but noise at {noise.position!r} "
                              f"reaches stages {needed}: build the runner with fed={needed}")
        values = {INPUT: x[:, None, :]}
        if noise.applies_to("input"):
            values[INPUT] = values[INPUT] + self._draws("input", start, n, x.shape[1], n_steps)
        noisy = self.model.noise_layers()  # noise key -> stage: the ONNX graph's activation layers
        if noise.applies_to("post"):
            values.update({s.index: self._draws(key, start, n, s.size_out, n_steps) for key, s in noisy.items()})
        feeds = stage_currents(self.model, self.fed, values)
        if noise.applies_to("pre"):
            for key, s in noisy.items():
                fed = f"current:{stage_key(s)}"
                feeds[fed] = feeds[fed] + self._draws(key, start, n, s.size_out, n_steps)
        return {k: np.broadcast_to(v, (n, n_steps, v.shape[2])) for k, v in feeds.items()}

    def _draws(self, layer: str, start: int, n: int, size: int, n_steps: int) -> np.ndarray:
        """A layer's noise: ``(n, 1, size)`` when frozen (held over the steps), else ``(n, n_steps, size)``."""
        if self.noise.mode == "frozen":
            return self.noise.draw(layer, start, n, size)[:, None, :]
        return self.noise.draws(layer, start, n, size, n_steps)

    def _simulate(self, x: np.ndarray, n_steps: int, start: int):
        if x.ndim != 2 or x.shape[1] != self.model.n_inputs:
            raise DataError(f"inputs must have shape (n, {self.model.n_inputs}), got {x.shape}")
        if self.noise.applies_to("pre") or self.noise.applies_to("post"):
            from snnbench.conversion.onnx_noise import check_hidden_layers

            check_hidden_layers(self.model)  # layer{i} is the same layer here as in ONNX Runtime
        self._build()
        run = self._run_batch_dl if self.sim.simulator == "nengo_dl" else self._run_batch_reference
        batch = self.sim.minibatch
        chunk = max(1, FEED_CHUNK // batch) * batch
        outputs, activity = [], 0.0
        for a in range(0, len(x), chunk):  # currents of a chunk computed together, simulated a minibatch at a time
            feeds = self._feeds(x[a: a + chunk], start + a, n_steps)
            for b in range(0, min(chunk, len(x) - a), batch):
                logits, layer_outputs = run({key: feed[b: b + batch] for key, feed in feeds.items()}, n_steps)
                outputs.append(logits)
                activity = activity + self._activity(layer_outputs)
        if not outputs:
            return np.zeros((0, n_steps, self.model.n_outputs), np.float32), None
        return np.concatenate(outputs), activity

    def _run_batch_dl(self, feeds: dict, n_steps: int):
        n = len(next(iter(feeds.values())))
        pad = self.sim.minibatch - n
        data = {self._net.inputs[k]: np.pad(v, ((0, pad), (0, 0), (0, 0))) if pad else v for k, v in feeds.items()}
        result = self._simulator.predict_on_batch(data, n_steps=n_steps)
        return result[self._net.output][:n], [result[p][:n] for p in self._net.counters]

    def _run_batch_reference(self, feeds: dict, n_steps: int):
        outputs, layer_outputs = [], []
        for i in range(len(next(iter(feeds.values())))):
            self._feed = {k: v[i] for k, v in feeds.items()}
            self._simulator.reset(seed=self.sim.seed)
            self._simulator.run_steps(n_steps)
            outputs.append(self._simulator.data[self._net.output])
            layer_outputs.append([self._simulator.data[p] for p in self._net.counters])
        return np.stack(outputs), [np.stack(layer) for layer in zip(*layer_outputs)]

    def _activity(self, layer_outputs: list) -> np.ndarray:
        """From each hidden layer's output ``(n, T, neurons)`` over the first ``sim.steps`` steps:
        [spikes of each layer..., accumulates (spikes x fan-out), (neuron, step) outputs with a spike,
        spiking neurons x samples that fire more than once in some step] (rate neurons: expected spikes)."""
        if not layer_outputs:
            return np.zeros(0)
        spikes, acs, active, multi = [], 0.0, 0.0, 0.0
        for out, params, fan_out in zip(layer_outputs, self.layers, self._fan_outs):
            out = out[:, :self.sim.steps]
            per_spike = 1.0 / (params.rate_scale * self.sim.dt)  # a neuron's output per spike (its amplitude / dt)
            totals = out.sum(axis=(0, 1), dtype=np.float64) / per_spike  # spikes per neuron
            spikes.append(totals.sum())
            acs += float(totals @ fan_out)
            active += np.count_nonzero(out > 1e-6 * per_spike)
            if params.spiking:  # two or more spikes in a step (1.5: robust to float rounding)
                multi += np.count_nonzero((out >= 1.5 * per_spike).any(axis=1))
        return np.array([*spikes, acs, active, multi])

    def _stats(self, x: np.ndarray, activity) -> dict:
        if not self.counters or activity is None or len(x) == 0:
            return {}
        steps, n = self.sim.steps, len(x)
        sizes = [stage.size_out for stage in self.model.hidden]
        spikes, (acs, active, multi) = activity[:len(sizes)], activity[len(sizes):]
        input_macs = steps * float(((np.asarray(x) != 0) @ self._net.input_fan_out).mean())
        per_neuron_step = spikes.sum() / (n * steps * sum(sizes))
        stats = {"spikes_per_neuron_per_step": per_neuron_step,
                 "mean_firing_rate_hz": per_neuron_step / self.sim.dt,
                 "spikes_per_sample": spikes.sum() / n,
                 "synaptic_acs_per_sample": acs / n,
                 "input_macs_per_sample": input_macs,
                 "synaptic_ops_per_sample": acs / n + input_macs,
                 "active_per_sample": active / n}
        spiking = sum(size for size, params in zip(sizes, self.layers) if params.spiking)
        if spiking:
            stats["multi_spike_neuron_share"] = multi / (n * spiking)
        for i, (s, size) in enumerate(zip(spikes, sizes)):
            stats[f"layer{i}_firing_rate_hz"] = s / (n * steps * size) / self.sim.dt
        return stats


class NengoModel(Model):
    """The converted network as a harness model: one runner per set of stages the noise reaches
    (:func:`~snnbench.conversion.nengo_net.fed_stages`: clean and input noise share one; pre, post
    another each where they reach more stages), built on first use and given each further noise
    setting as data."""
    engine = NENGO_SNN

    def __init__(self, converted, layers, sim, counters: bool = True, spike_loss: tuple = (0.0, 0)):
        self.converted = load_any(converted)
        self.layers, self.sim, self.counters, self.spike_loss = layers, sim, counters, spike_loss
        self.steps = sim.steps
        self._runners = {}

    def runner(self, noise: NoiseSpec):
        fed = fed_stages(self.converted, noise.position if noise.active else "none")
        if fed not in self._runners:
            self._runners[fed] = NengoRunner(self.converted, self.layers, self.sim, noise, self.counters, fed,
                                             self.spike_loss)
        runner = self._runners[fed]
        runner.noise = noise
        return runner

    def predict(self, x, noise=CLEAN, start=0):
        return self.predict_curve(x, [self.steps], noise, start)[self.steps]

    def predict_curve(self, x, steps_list, noise=CLEAN, start=0):
        """Logits for several step counts from one simulation (its activity over ``sim.steps`` steps)."""
        runner = self.runner(noise)
        logits = runner.predict_curve(x, steps_list, start)
        self.last_activity = self._activity(runner.last_stats, len(x))
        return logits

    def _activity(self, s: dict, n: int) -> M.Activity | None:
        """The Activity of ``n`` samples from a runner's ``last_stats`` (None without counters), with
        those statistics as its details."""
        if not s:
            return None
        steps = self.sim.steps
        neurons = sum(stage.size_out for stage in self.converted.hidden)
        return M.Activity(n, steps, neurons, s["active_per_sample"] * n, s["spikes_per_sample"] * n,
                          s["input_macs_per_sample"] * n, s["synaptic_acs_per_sample"] * n, float(n * steps * neurons),
                          float(self.converted.macs()), dict(s))

    def close(self):
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()


@register(NENGO_SNN)
def build(artifact, layers=None, sim: SimConfig = SimConfig(), counters: bool = True,
          calibration_inputs=None, spike_loss: tuple = (0.0, 0)) -> NengoModel:
    """``spike_loss``: (probability, seed), each hidden spike lost on its way to the next layer (IF neurons)."""
    converted, layers = converted_layers(artifact, layers, calibration_inputs, sim.seed, sim.dt)
    return NengoModel(converted, layers, sim, counters, spike_loss)
