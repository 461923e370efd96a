"""The converted network's own neuron types and their nengo_dl (TensorFlow) implementations.

With at most ``m`` spikes a step and reset by subtraction, :class:`SignedIF`'s rate converges to
``min(relu(J), m / dt)``: a bounded ReLU whose bound is ``m`` spikes per step. :class:`LossyIF` is
:class:`SignedIF` whose spikes are each lost on their way out with a probability (spike deletion).
"""

import nengo
import numpy as np
from nengo.params import IntParam, NumberParam


class SignedIF(nengo.SpikingRectifiedLinear):
    """Integrate-and-fire neuron whose membrane integrates the signed current (no floor at zero),
    reset by subtraction, ``min(floor(voltage), max_spikes)`` spikes in a step."""

    max_spikes = NumberParam("max_spikes", low=1)

    def __init__(self, amplitude=1, max_spikes=np.inf, initial_state=None, **kwargs):
        super().__init__(amplitude=amplitude, initial_state=initial_state, **kwargs)
        self.max_spikes = max_spikes

    def step(self, dt, J, output, voltage):
        voltage += J * dt
        n_spikes = np.minimum(np.floor(np.maximum(voltage, 0.0)), self.max_spikes)
        output[:] = (self.amplitude / dt) * n_spikes
        voltage -= n_spikes


class LossyIF(SignedIF):
    """:class:`SignedIF` whose spikes each reach the next layer with probability ``1 - loss`` (the neuron
    fires and resets as before); the draws come from ``seed`` (a binomial per neuron and step)."""

    loss = NumberParam("loss", low=0, high=1)
    seed = IntParam("seed", low=0)

    def __init__(self, loss=0.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.loss, self.seed = loss, seed

    @classmethod
    def of(cls, neuron: SignedIF, loss: float, seed: int) -> "LossyIF":
        """``neuron`` (its amplitude, bound and initial state) losing its spikes with probability ``loss``."""
        return cls(loss, seed, amplitude=neuron.amplitude, max_spikes=neuron.max_spikes,
                   initial_state=neuron.initial_state)

    def make_state(self, n_neurons, rng=np.random, dtype=None):
        state = super().make_state(n_neurons, rng=rng, dtype=dtype)
        state["rng"] = np.random.RandomState(self.seed)
        return state

    def step(self, dt, J, output, rng, voltage):
        voltage += J * dt
        n_spikes = np.minimum(np.floor(np.maximum(voltage, 0.0)), self.max_spikes)
        output[:] = (self.amplitude / dt) * rng.binomial(n_spikes.astype(np.int64), 1 - self.loss)
        voltage -= n_spikes


class ClippedRectifiedLinear(nengo.RectifiedLinear):
    """Rate neuron ``amplitude * clip(J, 0, max_current)`` (a bounded ReLU)."""

    max_current = NumberParam("max_current", low=0, low_open=True)

    def __init__(self, amplitude=1, max_current=np.inf, **kwargs):
        super().__init__(amplitude=amplitude, **kwargs)
        self.max_current = max_current

    def step(self, dt, J, output):
        output[...] = self.amplitude * np.clip(J, 0.0, self.max_current)


def register_nengo_dl_neurons(nengo_dl):
    """Give nengo_dl TensorFlow implementations of both neurons (else it runs their NumPy steps
    through Python at every time step)."""
    table = nengo_dl.neuron_builders.SimNeuronsBuilder.TF_NEURON_IMPL
    if SignedIF in table and ClippedRectifiedLinear in table and LossyIF in table:
        return
    import tensorflow as tf

    def per_neuron(builder, signals, name):
        return signals.op_constant([op.neurons for op in builder.ops], [op.J.shape[0] for op in builder.ops],
                                   name, signals.dtype)

    class SignedIFBuilder(nengo_dl.neuron_builders.TFNeuronBuilder):
        spiking = True

        def build_pre(self, signals, config):
            super().build_pre(signals, config)
            bounded = any(np.isfinite(op.neurons.max_spikes) for op in self.ops)
            self.max_spikes = per_neuron(self, signals, "max_spikes") if bounded else None

        def step(self, J, dt, voltage):
            voltage = voltage + J * dt
            n_spikes = tf.floor(tf.nn.relu(voltage))
            if self.max_spikes is not None:
                n_spikes = tf.minimum(n_spikes, self.max_spikes)
            return self.emitted(n_spikes) * self.alpha, voltage - n_spikes

        def emitted(self, n_spikes):
            return n_spikes

        def training_step(self, J, dt, **state):
            return tf.nn.relu(J) * self.alpha * dt

    class LossyIFBuilder(SignedIFBuilder):
        def build_pre(self, signals, config):
            super().build_pre(signals, config)
            self.keep = 1 - per_neuron(self, signals, "loss")
            self.seed = int(sum(op.neurons.seed for op in self.ops))  # the op's seed; nengo_dl sets the graph's

        def emitted(self, n_spikes):
            # a fresh seed each step from a seeded stateful op, then an exact binomial of the step's spikes
            seed = tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32, seed=self.seed)
            kept = tf.random.stateless_binomial(tf.shape(n_spikes), seed, n_spikes,
                                                tf.broadcast_to(self.keep, tf.shape(n_spikes)), n_spikes.dtype)
            kept.set_shape(n_spikes.shape)
            return kept

    class ClippedRectifiedLinearBuilder(nengo_dl.neuron_builders.TFNeuronBuilder):
        def build_pre(self, signals, config):
            super().build_pre(signals, config)
            self.max_current = per_neuron(self, signals, "max_current")

        def step(self, J, dt):
            out = tf.minimum(tf.nn.relu(J), self.max_current)
            return out if self.amplitude is None else out * self.amplitude

    table[SignedIF] = SignedIFBuilder
    table[LossyIF] = LossyIFBuilder
    table[ClippedRectifiedLinear] = ClippedRectifiedLinearBuilder
