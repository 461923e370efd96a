"""Engine ``loihi-emulator``: the converted SNN on nengo-loihi's emulator, mapped as
:mod:`snnbench.conversion.loihi` says.

Each sample runs ``warmup + steps`` steps from a fresh state, set in place (nengo-loihi has no
reset): compartments zeroed, the off-chip input layer at half its threshold, and the input spikes of
the last step, which would reach the chip a step later, dropped (a test checks this equals a fresh
simulator). Logits are read over the last ``steps`` steps: membranes start at zero and each on-chip
connection adds a step of delay, so ``warmup`` (default: one step per on-chip layer) comes before
nengo-dl's integration window. Activity counts every step the chip ran. Noise: at the input only,
the other engines' draws; a noisy pixel below 0 gives no spikes (the input layer rectifies).

Spike deletion (``spike_loss``, :class:`SpikeLoss`): each spike of an on-chip (hidden) compartment is lost
with a probability between the compartment update, which fires and resets the neuron, and the step's
probes and axons, so a lost spike neither reaches the next layer (nor the output) nor is counted, while
the neuron has reset as if it had emitted it, as nengo-snn's IF neurons lose theirs. The off-chip input
layer, the pixels' spike encoding (nengo-snn feeds the pixels as currents), keeps its spikes.
"""

import warnings

import numpy as np

from snnbench.conversion import loihi as L
from snnbench.conversion.nengo_net import SimConfig, build_network, layer_list, readout
from snnbench.conversion.converted_files import load_any
from snnbench.engines import LOIHI_EMULATOR, converted_layers, register
from snnbench.errors import ConfigError, DataError, UnsupportedModelError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model
from snnbench.noise import NoiseSpec


class SpikeLoss:
    """Each spike of the emulator's ``layers`` (compartment indices, one array a layer) lost with
    probability ``loss``: the emulator's compartment update, then the spikes kept by each layer's draw (a
    uniform per compartment and step, kept if >= ``loss``). :meth:`reseed` starts layer ``i``'s draws of a
    sample from ``(seed + i, sample index)``, so they do not depend on how samples are batched."""

    def __init__(self, emulator, layers: list, loss: float):
        self.layers, self.loss = layers, float(loss)
        self.generators: list = []
        state, update = emulator.compartment, emulator.compartment.update

        def update_and_lose(rng):
            update(rng)  # fires, resets and starts the refractory count of every compartment over threshold
            for compartments, generator in zip(self.layers, self.generators):
                state.spiked[compartments] &= generator.random(len(compartments)) >= self.loss

        state.update = update_and_lose  # the step reads ``spiked`` next: probes now, axons at the next step

    def reseed(self, seed: int, sample: int):
        self.generators = [np.random.default_rng([seed + i, sample]) for i in range(len(self.layers))]


class LoihiModel(Model):
    engine = LOIHI_EMULATOR

    def __init__(self, converted, layers, sim: SimConfig, warmup: int | None = None, spike_loss: tuple | None = None):
        if spike_loss is not None and not 0 <= spike_loss[0] <= 1:
            raise ConfigError(f"spike loss is a probability from 0 to 1, got {spike_loss[0]}")
        self.spike_loss = spike_loss  # (probability, seed): each hidden spike lost on its way out
        self.converted = load_any(converted)
        self.layers = layer_list(layers, len(self.converted.hidden))
        L.check_neurons(self.layers)
        if warmup is not None and warmup < 0:
            raise ConfigError(f"--loihi-warmup must be >= 0 steps, got {warmup}")
        self.sim, self.steps = sim, sim.steps
        self.warmup = len(self.converted.hidden) if warmup is None else warmup
        self.period = self.warmup + self.steps
        self.chip = L.with_input_layer(L.fold_pooling(self.converted))
        self.utilization: list[str] = []
        self.last_layer_spikes: list[float] = []  # spikes per population of the last prediction, input layer first
        self._simulator = self._feed = self._lost = None
        self._first_step = 0

    def _input(self, t):
        if self._feed is None:
            return np.zeros(self.chip.n_inputs)
        k = int(round(t / self.sim.dt)) - 1 - self._first_step
        return self._feed[min(max(k, 0), len(self._feed) - 1)]

    def build(self):
        if self._simulator is not None:
            return
        import nengo
        from nengo.exceptions import BuildError

        nengo_loihi = L.import_nengo_loihi()
        L.register_loihi_neurons()
        layers = [L.input_layer_params(self.sim.dt)] + self.layers
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*max_rates.*|.*initial values for.*|.*precomputable.*")
            warnings.filterwarnings("ignore", message="invalid value encountered in log1p")
            net = build_network(self.chip, layers, self.sim,
                                node_output=lambda key, size: self._input if key == "input" else np.zeros(size),
                                counters=False)
            nengo_loihi.add_params(net.network)
            net.network.config[net.ensembles[0]].on_chip = False
            for ens, stage in zip(net.ensembles[1:], self.chip.hidden[1:]):
                shape = L.block_shape(stage.shape)
                if shape is not None:
                    net.network.config[ens].block_shape = nengo_loihi.BlockShape(shape, stage.shape)
            with net.network:
                self._probes = [nengo.Probe(e.neurons, synapse=None) for e in net.ensembles]
            try:
                self._simulator = nengo_loihi.Simulator(net.network, dt=self.sim.dt, precompute=True, target="sim",
                                                        seed=self.sim.seed)
            except (BuildError, NotImplementedError) as exc:
                reason = str(exc).splitlines()[0][:240]
                raise UnsupportedModelError(f"the network does not fit Loihi: {reason}") from None
        self._net = net
        self.utilization = self._simulator.model.utilization_summary()
        self._emulator = self._simulator.sims["emulator"]
        L.clamp_voltage_floor(self._emulator)
        if self.spike_loss is not None:
            slices = self._emulator.block_info.slices
            hidden = [np.concatenate([np.arange(slices[b].start, slices[b].stop)
                                      for b in self._simulator.model.objs[ens.neurons]["out"]])
                      for ens in net.ensembles[1:]]  # an image-shaped layer spans several blocks
            self._lost = SpikeLoss(self._emulator, hidden, self.spike_loss[0])
        host = self._simulator.sims["host_pre"]
        self._input_voltage = host.signals[host.model.sig[net.ensembles[0].neurons]["voltage"]]
        self._fan_outs = [self.chip.fan_out(i) for i in range(len(self.chip.hidden))]

    def _reset(self):
        state = self._emulator.compartment
        for array in (state.input, state.current, state.voltage, state.ref_count):
            array[...] = 0
        state.spiked[:] = False
        self._input_voltage[...] = 0.5  # the input layer's start (half the threshold)
        self._first_step = self._simulator.n_steps
        for spike_input in self._emulator.inputs:  # host spikes of the last step arrive a step later: drop them
            spike_input.spikes.pop(self._first_step, None)

    def _feeds(self, x, noise: NoiseSpec, start: int) -> np.ndarray:
        """Per-sample, per-step inputs ``(n, period, features)``."""
        feeds = np.repeat(x[:, None, :], self.period, axis=1)
        if noise.applies_to("input"):
            feeds += noise.draws("input", start, len(x), x.shape[1], self.period)
        elif noise.active:
            raise ConfigError(f"loihi-emulator takes input noise only, got noise at {noise.position!r}")
        if (x < 0).any():
            raise DataError("Loihi's input layer turns pixels into spikes and takes inputs >= 0; got negative inputs")
        return np.maximum(feeds, 0.0, out=feeds)

    def predict(self, x, noise: NoiseSpec = CLEAN, start: int = 0) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.chip.n_inputs:
            raise DataError(f"inputs must have shape (n, {self.chip.n_inputs}), got {x.shape}")
        feeds = self._feeds(x, noise, start)
        self.build()
        logits, spikes = [], [np.zeros_like(f) for f in self._fan_outs]
        active = 0.0
        for k, sample in enumerate(feeds):
            self._reset()
            if self._lost is not None:
                self._lost.reseed(self.spike_loss[1], start + k)
            self._feed = sample
            self._simulator.run_steps(self.period)
            logits.append(readout(self._simulator.data[self._net.output][None, -self.steps:], self.steps,
                                  self.sim.readout)[0])
            for i, probe in enumerate(self._probes):
                amplitude = self._net.ensembles[i].neuron_type.amplitude
                counts = np.round(self._simulator.data[probe] * self.sim.dt / amplitude)
                spikes[i] += counts.sum(axis=0)
                active += float((counts > 0).sum())
            self._simulator.clear_probes()
        self._feed = None
        self.last_layer_spikes = [float(s.sum()) for s in spikes]
        n, neurons = len(x), sum(stage.size_out for stage in self.chip.hidden)
        acs = float(sum(s @ f for s, f in zip(spikes, self._fan_outs)))
        self.last_activity = M.Activity(n, self.period, neurons, active, float(sum(s.sum() for s in spikes)), 0.0,
                                        acs, float(n * self.period * neurons), float(self.converted.macs()))
        return np.stack(logits) if logits else np.zeros((0, self.chip.n_outputs), np.float32)

    def close(self):
        if self._simulator is not None:
            self._simulator.close()
        self._simulator = self._lost = None


@register(LOIHI_EMULATOR)
def build(artifact, layers=None, sim: SimConfig = SimConfig(), warmup: int | None = None,
          calibration_inputs=None, spike_loss: tuple | None = None) -> LoihiModel:
    """``spike_loss``: (probability, seed), each hidden spike lost on its way to the next layer."""
    converted, layers = converted_layers(artifact, layers, calibration_inputs, sim.seed, sim.dt)
    return LoihiModel(converted, layers, sim, warmup, spike_loss)
