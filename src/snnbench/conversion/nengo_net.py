"""A spiking (or rate) Nengo network built from a converted ONNX model.

One ensemble per hidden (ReLU) stage; every connection goes onto ``ensemble.neurons`` with the
ONNX weights (``nengo.Convolution`` transforms for convolutions, average pooling as a
per-channel Convolution through a pass-through Node). The output is a Node receiving the last
stage plus a constant Node holding its bias. Per neuron, the input current is

    J = gain * rate_scale * (W x [+ pre-noise]) + rate_scale * (bias_scale * b + bias_offset)

and the neuron's output (amplitude ``1 / rate_scale``, spikes of ``1 / (rate_scale * dt)``) is
filtered by the layer's output synapse before the next layer. With ``relu-rate`` neurons,
``gain = bias_scale = 1`` and ``bias_offset = 0`` the network computes the DNN exactly, for
any ``rate_scale``.

An IF neuron thus fires ``rate_scale * a`` Hz for activation ``a``, i.e. ``rate_scale * a * dt``
spikes per step; :mod:`snnbench.conversion.calibration` picks ``rate_scale`` per layer from training data.
Two IF neurons, both reset by subtraction and both free to fire several spikes in one step:

* ``if``: integrate-and-fire as in the conversion literature (Rueckauer et al. 2017, SpikingJelly's
  IFNode, the suite's snntorch IF): the membrane integrates the signed input current, so
  inhibiting spikes lower it, below zero if need be (:class:`SignedIF`);
* ``if-rectified``: nengo's SpikingRectifiedLinear, which drops each step's negative current.
  Deeper layers, whose input is a sum of spikes that changes from step to step, then fire too
  much: inhibition that arrives in another step than the excitation it should cancel is lost.

Per-layer settings travel as JSON (``--params-json``, written by calibration and by the tune
benchmark)::

    {"layers": [{"neuron": "if", "gain": 1.0, "bias_scale": 1.0, "bias_offset": 0.0,
                 "rate_scale": 203.5, "synapse": null, "tau_rc": 0.02, "tau_ref": 0.002,
                 "initial_voltage": "half"}, ...],
     "sim": {"steps": 8, "dt": 0.001, "readout": "mean"}}

``layers`` holds one entry per hidden layer, or a single entry used for all of them; missing
keys keep their defaults. ``sim`` is optional and may set any :class:`SimConfig` field. Other
top-level keys (``source``: where the setting came from) are kept for the reader and ignored.
"""

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import nengo
import numpy as np

from snnbench.errors import SnnbenchError
from snnbench.conversion.onnx_io import INPUT, ConvertedModel, LinearOp

NEURONS = ("lif", "if", "if-rectified", "lif-rate", "relu-rate")
READOUTS = ("mean", "last", "second-half")  # mean over all steps, the last step, the second half
SIMULATORS = ("nengo_dl", "nengo")
INITIAL_VOLTAGES = ("uniform", "half")  # spiking neurons' start: nengo's uniform [0, 1), or 0.5


class SignedIF(nengo.SpikingRectifiedLinear):
    """Integrate-and-fire neuron whose membrane integrates the signed current (no floor at zero),
    reset by subtraction, ``floor(voltage)`` spikes in a step once it reaches the threshold 1."""

    def step(self, dt, J, output, voltage):
        voltage += J * dt
        n_spikes = np.floor(np.maximum(voltage, 0.0))
        output[:] = (self.amplitude / dt) * n_spikes
        voltage -= n_spikes


def register_nengo_dl_neurons(nengo_dl):
    """Give nengo_dl a TensorFlow implementation of :class:`SignedIF` (otherwise it would run the
    NumPy step above through Python at every time step)."""
    table = nengo_dl.neuron_builders.SimNeuronsBuilder.TF_NEURON_IMPL
    if SignedIF in table:
        return
    import tensorflow as tf

    class SignedIFBuilder(nengo_dl.neuron_builders.TFNeuronBuilder):
        spiking = True

        def step(self, J, dt, voltage):
            voltage = voltage + J * dt
            n_spikes = tf.floor(tf.nn.relu(voltage))
            return n_spikes * self.alpha, voltage - n_spikes

        def training_step(self, J, dt, **state):
            return tf.nn.relu(J) * self.alpha * dt

    table[SignedIF] = SignedIFBuilder


@dataclass
class LayerParams:
    """Neuron settings of one hidden (activation) layer."""
    neuron: str = "lif"      # lif | if | if-rectified | lif-rate | relu-rate
    gain: float = 1.0        # multiplies the input weights onto .neurons (ensemble gain)
    bias_scale: float = 1.0  # ensemble bias = bias_scale * onnx_bias + bias_offset
    bias_offset: float = 0.0
    rate_scale: float = 1.0  # inputs x rate_scale, outputs / rate_scale (amplitude)
    synapse: float | None = None  # output synapse (lowpass tau, s); None = no filtering
    tau_rc: float = 0.02
    tau_ref: float = 0.002
    initial_voltage: str = "uniform"  # of spiking neurons, as a fraction of the threshold

    def __post_init__(self):
        if self.neuron not in NEURONS:
            raise SnnbenchError(f"unknown neuron type {self.neuron!r}; use one of {', '.join(NEURONS)}")
        if self.initial_voltage not in INITIAL_VOLTAGES:
            raise SnnbenchError(f"unknown initial voltage {self.initial_voltage!r}; use one of "
                                f"{', '.join(INITIAL_VOLTAGES)}")
        if not self.rate_scale > 0 or not np.isfinite(self.gain) or not np.isfinite(self.bias_scale):
            raise SnnbenchError(f"bad layer parameters {self}: rate_scale must be > 0, gain and bias finite")
        if self.synapse is not None and not self.synapse >= 0:
            raise SnnbenchError(f"synapse must be None or >= 0 seconds, got {self.synapse}")
        if not (self.tau_rc > 0 and self.tau_ref >= 0):
            raise SnnbenchError(f"tau_rc must be > 0 and tau_ref >= 0, got {self.tau_rc}, {self.tau_ref}")

    def neuron_type(self) -> nengo.neurons.NeuronType:
        amplitude = 1.0 / self.rate_scale
        start = {} if self.initial_voltage == "uniform" else {"initial_state": {"voltage": nengo.dists.Choice([0.5])}}
        if self.neuron == "lif":
            return nengo.LIF(tau_rc=self.tau_rc, tau_ref=self.tau_ref, amplitude=amplitude, **start)
        if self.neuron == "lif-rate":
            return nengo.LIFRate(tau_rc=self.tau_rc, tau_ref=self.tau_ref, amplitude=amplitude)
        if self.neuron == "if":
            return SignedIF(amplitude=amplitude, **start)
        if self.neuron == "if-rectified":
            return nengo.SpikingRectifiedLinear(amplitude=amplitude, **start)
        return nengo.RectifiedLinear(amplitude=amplitude)

    @property
    def spiking(self) -> bool:
        return self.neuron in ("lif", "if", "if-rectified")


@dataclass
class SimConfig:
    steps: int = 30
    dt: float = 0.001
    readout: str = "mean"    # "mean" (over all steps) | "last" | "second-half" (mean over it)
    minibatch: int = 100
    simulator: str = "nengo_dl"  # or "nengo"
    seed: int = 0            # network seed (LIF / IF initial voltages)

    def __post_init__(self):
        if self.steps < 1 or self.minibatch < 1 or not self.dt > 0:
            raise SnnbenchError(f"bad simulation settings {self}: steps >= 1, minibatch >= 1, dt > 0")
        if self.readout not in READOUTS:
            raise SnnbenchError(f"unknown readout {self.readout!r}; use one of {', '.join(READOUTS)}")
        if self.simulator not in SIMULATORS:
            raise SnnbenchError(f"unknown simulator {self.simulator!r}; use one of {', '.join(SIMULATORS)}")


def layer_list(layers, n_hidden: int) -> list:
    """One LayerParams per hidden layer (a single one is repeated)."""
    layers = [layers] if isinstance(layers, LayerParams) else list(layers)
    if len(layers) == 1:
        layers = layers * n_hidden
    if len(layers) != n_hidden:
        raise SnnbenchError(f"got parameters for {len(layers)} layers but the network has {n_hidden} "
                            "hidden layers; give one entry per hidden layer or a single entry for all")
    return layers


def readout(outputs: np.ndarray, steps: int, mode: str) -> np.ndarray:
    """Logits from per-step outputs ``(n, T, classes)`` using the first ``steps`` steps."""
    if mode not in READOUTS:
        raise SnnbenchError(f"unknown readout {mode!r}; use one of {', '.join(READOUTS)}")
    if mode == "last":
        return outputs[:, steps - 1]
    first = steps // 2 if mode == "second-half" else 0
    return outputs[:, first: steps].mean(axis=1)


# --------------------------------------------------------------------------- parameter files

def save_params(path, layers: list, sim: dict | None = None) -> Path:
    """Write per-layer parameters (and optional SimConfig overrides) in the --params-json format."""
    path = Path(path)
    doc = {"layers": [asdict(p) for p in layers], "sim": dict(sim or {})}
    path.write_text(json.dumps(doc, indent=1))
    return path


def load_params(path, defaults: LayerParams = LayerParams()) -> tuple[list, dict]:
    """Read a --params-json file: (list of LayerParams, dict of SimConfig overrides)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SnnbenchError(f"cannot read parameters from {path} ({exc}); give a JSON file like "
                            '{"layers": [{"gain": 1.0, ...}], "sim": {"steps": 30}}') from None
    return parse_params(doc, path, defaults)


def parse_params(doc, source, defaults: LayerParams = LayerParams()) -> tuple[list, dict]:
    """Check a parameters document (see :func:`load_params`); ``source`` names it in errors."""
    path = source
    layer_keys = {f.name for f in fields(LayerParams)}
    sim_keys = {f.name for f in fields(SimConfig)}
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list) or not doc["layers"]:
        raise SnnbenchError(f"{path}: expected an object with a non-empty 'layers' list")
    unknown = {k for entry in doc["layers"] for k in entry} - layer_keys
    unknown |= {f"sim.{k}" for k in doc.get("sim", {})} - {f"sim.{k}" for k in sim_keys}
    if unknown:
        raise SnnbenchError(f"{path}: unknown keys {sorted(unknown)}; layer keys: {sorted(layer_keys)}, "
                            f"sim keys: {sorted(sim_keys)}")
    return [replace(defaults, **entry) for entry in doc["layers"]], dict(doc.get("sim", {}))


# --------------------------------------------------------------------------- building the network

def _transform(op: LinearOp, scale: float = 1.0):
    """``scale`` x the op as a Nengo transform (dense, conv, avgpool, select)."""
    if op.kind == "dense":
        return nengo.transforms.Dense((op.size_out, op.size_in), init=scale * op.weight)
    if op.kind == "conv":
        kernel = np.transpose(op.weight, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)
        return nengo.Convolution(op.out_shape[0], op.in_shape, op.kernel, op.strides, op.padding,
                                 channels_last=False, init=scale * kernel)
    if op.kind == "select":
        rows = np.arange(op.size_out)
        return nengo.transforms.Sparse((op.size_out, op.size_in), indices=np.stack([rows, op.indices()], axis=1),
                                       init=np.full(op.size_out, scale))
    channels = op.in_shape[0]  # avgpool: a per-channel convolution
    kernel = np.zeros((*op.kernel, channels, channels), np.float32)
    kernel[:, :, np.arange(channels), np.arange(channels)] = scale / np.prod(op.kernel)
    return nengo.Convolution(channels, op.in_shape, op.kernel, op.strides, "valid",
                             channels_last=False, init=kernel)


def _into(target, start: int, size: int):
    """``target`` or its slice ``[start, start + size)``."""
    return target if start == 0 and size == target.size_in else target[start: start + size]


def _connect_paths(paths: list, target, source, start: int = 0):
    """Connect the sum of ``paths`` into ``target`` (from element ``start`` on, for a Concat).

    ``source(index)`` gives the (object, synapse) that carries a population's output. Paths that
    end with the same op are summed in a pass-through Node and share one connection through it
    (the op's own connection carries the population's synapse when it reads one directly).
    """
    groups = {}
    for path in paths:
        if path.ops:
            groups.setdefault(id(path.ops[-1]), (path.ops[-1], []))[1].append(replace(path, ops=path.ops[:-1]))
        else:
            obj, synapse = source(path.source)
            nengo.Connection(obj, _into(target, start, obj.size_out), transform=path.scale, synapse=synapse)
    for op, inner in groups.values():
        if op.kind == "place":
            _connect_paths(inner, target, source, start + op.place_start)
            continue
        if len(inner) == 1 and not inner[0].ops:
            (obj, synapse), scale = source(inner[0].source), inner[0].scale
        else:
            obj, synapse, scale = nengo.Node(size_in=op.size_in, label=f"{op.kind}_in"), None, 1.0
            _connect_paths(inner, obj, source)
        nengo.Connection(obj, _into(target, start, op.size_out), transform=_transform(op, scale), synapse=synapse)


@dataclass
class SnnNetwork:
    network: nengo.Network
    inputs: dict          # feed key ("input", "pre:layer{i}", "post:layer{i}") -> Node
    output: nengo.Probe   # logits per step
    counters: list        # per hidden layer: Probe of (spikes, accumulates) per step
    ensembles: list
    fan_outs: list        # per hidden layer: fan-out of each neuron (to every later population)
    input_fan_out: np.ndarray


def build_network(model: ConvertedModel, layers: list, sim: SimConfig, noise_positions=(),
                  node_output=None, counters: bool = True) -> SnnNetwork:
    """The Nengo network for ``model``: one ensemble per hidden stage (``layer{i}``, in the
    order of ``model.hidden``, max-pool helper populations included), each fed by its stage's
    paths (see :mod:`snnbench.conversion.onnx_io`); the logits Node gets the last stage's paths and bias.

    ``noise_positions`` may hold "pre" / "post": noise input Nodes are added per hidden layer.
    ``node_output(key, size)`` gives each input Node's output (default: zeros, i.e. data fed by
    nengo_dl); the reference simulator passes callables.
    """
    layers = layer_list(layers, len(model.hidden))
    node_output = node_output or (lambda key, size: np.zeros(size))
    inputs = {}
    with nengo.Network(seed=sim.seed, label="converted SNN") as net:
        inputs["input"] = nengo.Node(node_output("input", model.n_inputs), label="input")
        outputs = {INPUT: (inputs["input"], None)}  # source index -> (object, synapse) carrying its output
        ensembles, counter_probes, fan_outs = [], [], []
        for i, (stage, params) in enumerate(zip(model.hidden, layers)):
            n = stage.size_out
            rs = params.rate_scale
            ens = nengo.Ensemble(n, 1, neuron_type=params.neuron_type(), gain=np.full(n, params.gain * rs),
                                 bias=rs * (params.bias_scale * stage.bias + params.bias_offset),
                                 label=f"layer{i}", seed=sim.seed + i)  # own seed: initial voltages
            # must not depend on which noise or counter nodes the network also holds
            _connect_paths(stage.paths, ens.neurons, outputs.__getitem__)
            if "pre" in noise_positions:
                inputs[f"pre:layer{i}"] = nengo.Node(node_output(f"pre:layer{i}", n), label=f"pre_noise{i}")
                nengo.Connection(inputs[f"pre:layer{i}"], ens.neurons, synapse=None)
            outputs[i] = (ens.neurons, params.synapse)
            if "post" in noise_positions:
                inputs[f"post:layer{i}"] = nengo.Node(node_output(f"post:layer{i}", n), label=f"post_noise{i}")
                noisy = nengo.Node(size_in=n, label=f"layer{i}_noisy")
                nengo.Connection(ens.neurons, noisy, synapse=params.synapse)
                nengo.Connection(inputs[f"post:layer{i}"], noisy, synapse=None)
                outputs[i] = (noisy, None)
            ensembles.append(ens)
            fan_outs.append(model.fan_out(i))
            if counters:
                counter_probes.append(_counter(ens, params, fan_outs[-1], sim.dt))
        logits = nengo.Node(size_in=model.n_outputs, label="logits")
        _connect_paths(model.stages[-1].paths, logits, outputs.__getitem__)
        bias = nengo.Node(model.stages[-1].bias, label="output_bias")
        nengo.Connection(bias, logits, synapse=None)
        probe = nengo.Probe(logits, synapse=None)
    return SnnNetwork(net, inputs, probe, counter_probes, ensembles, fan_outs, model.fan_out(INPUT))


def _counter(ens, params: LayerParams, fanout: np.ndarray, dt: float) -> nengo.Probe:
    """Probe of [spikes, spikes x fan-out] per step for one ensemble (rates: expected spikes)."""
    node = nengo.Node(size_in=2, label=f"{ens.label}_counter")
    scale = params.rate_scale * dt  # neuron output is 1 / (rate_scale * dt) per spike
    nengo.Connection(ens.neurons, node, transform=scale * np.vstack([np.ones_like(fanout), fanout]),
                     synapse=None)
    return nengo.Probe(node, synapse=None)
