"""A spiking (or rate) Nengo network built from a converted ONNX model.

One ensemble per hidden stage, every connection onto ``ensemble.neurons`` with the ONNX weights; the
logits are a Node fed by the last stage's paths and a constant bias Node. Per neuron the current is

    J = gain * rate_scale * (W x [+ pre-noise]) + rate_scale * (bias_scale * b + bias_offset)

and the output (amplitude ``1 / rate_scale``: a spike is ``1 / (rate_scale * dt)``) goes through the
layer's output synapse. With ``relu-rate`` neurons, ``gain = bias_scale = 1`` and ``bias_offset = 0``
the network is the DNN, for any ``rate_scale``; an IF neuron fires ``rate_scale * a`` Hz for
activation ``a``. Both IF neurons reset by subtraction and may fire several spikes in a step:

* ``if``: the membrane integrates the signed current, below zero if need be (:class:`SignedIF`; as
  Rueckauer et al. 2017, SpikingJelly's IFNode, the suite's snntorch IF);
* ``if-rectified``: nengo's SpikingRectifiedLinear, which drops each step's negative current, so
  deeper layers fire too much (inhibition arriving in another step than its excitation is lost).

Per-layer settings travel as JSON (``--params-json``, written by calibration and by tuning)::

    {"layers": [{"neuron": "if", "gain": 1.0, "bias_scale": 1.0, "bias_offset": 0.0,
                 "rate_scale": 203.5, "synapse": null, "tau_rc": 0.02, "tau_ref": 0.002,
                 "initial_voltage": "half"}, ...],
     "sim": {"steps": 8, "dt": 0.001, "readout": "mean"}}

``layers``: one entry per hidden layer, or one for all; missing keys keep their defaults. ``sim``
(optional) may set any :class:`SimConfig` field. Other top-level keys (``source``) are ignored.
"""

import json
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path

import nengo
import numpy as np
import torch

from snnbench.config import check_choice, check_choices, option, positive
from snnbench.errors import SnnbenchError
from snnbench.conversion.neurons import ClippedRectifiedLinear, SignedIF, register_nengo_dl_neurons  # noqa: F401
from snnbench.conversion.graph import INPUT, ConvertedModel, LinearOp, Stage, sum_paths

NEURONS = ("lif", "if", "if-rectified", "lif-rate", "relu-rate")
SPIKING_NEURONS = ("if", "if-rectified", "lif")  # what calibration sets and Loihi runs
IF_NEURONS = ("if", "if-rectified")  # reset by subtraction, no leak: what correction simulates, NIR exports
READOUTS = ("mean", "last", "second-half")  # mean over all steps, the last step, the second half
SIMULATORS = ("nengo_dl", "nengo")
INITIAL_VOLTAGES = ("uniform", "half")  # spiking neurons' start: nengo's uniform [0, 1), or 0.5


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
    # per output channel of the stage (per neuron of a flat one); None = the same for all:
    channel_scales: list | None = None   # rate_scale factors (per-channel calibration)
    channel_bias: list | None = None     # added to the ONNX bias (error correction), activation units
    channel_voltage: list | None = None  # initial voltage of spiking neurons (overrides initial_voltage)

    def __post_init__(self):
        check_choice("neuron type", self.neuron, NEURONS)
        check_choice("initial voltage", self.initial_voltage, INITIAL_VOLTAGES)
        if not self.rate_scale > 0 or not np.isfinite(self.gain) or not np.isfinite(self.bias_scale):
            raise SnnbenchError(f"bad layer parameters {self}: rate_scale must be > 0, gain and bias finite")
        if self.synapse is not None and not self.synapse >= 0:
            raise SnnbenchError(f"synapse must be None or >= 0 seconds, got {self.synapse}")
        if not (self.tau_rc > 0 and self.tau_ref >= 0):
            raise SnnbenchError(f"tau_rc must be > 0 and tau_ref >= 0, got {self.tau_rc}, {self.tau_ref}")
        for name in ("channel_scales", "channel_bias", "channel_voltage"):
            values = getattr(self, name)
            if values is not None and (not len(values) or not np.all(np.isfinite(values))):
                raise SnnbenchError(f"{name} must be None or a non-empty list of finite numbers")
        if self.channel_scales is not None and min(self.channel_scales) <= 0:
            raise SnnbenchError("channel_scales must be > 0")

    def per_neuron(self, stage: Stage, name: str, default: float) -> np.ndarray:
        """The per-channel list ``name`` (or ``default``) for each neuron of ``stage``."""
        values = getattr(self, name)
        if values is None:
            return np.full(stage.size_out, float(default))
        if len(values) != stage.channels:
            raise SnnbenchError(f"{name} has {len(values)} entries but layer {stage.name!r} has "
                                f"{stage.channels} channels")
        return np.repeat(np.asarray(values, np.float64), stage.size_out // stage.channels)

    def max_spikes(self, stage: Stage, dt: float) -> float:
        """Spikes per step at a Clip layer's bound (at least 1; unbounded for a plain ReLU)."""
        return np.inf if stage.upper is None else max(1.0, float(np.round(stage.upper * self.rate_scale * dt)))

    def neuron_type(self, stage: Stage | None = None, dt: float = 0.001) -> nengo.neurons.NeuronType:
        """The neuron type of ``stage``'s ensemble (a Clip layer's bound needs an if or relu-rate neuron)."""
        amplitude = 1.0 / self.rate_scale
        bounded = stage is not None and stage.upper is not None
        if bounded and self.neuron not in ("if", "relu-rate"):
            raise SnnbenchError(f"layer {stage.name!r} is a Clip (bounded ReLU); it converts with neuron if or "
                                f"relu-rate, not {self.neuron!r}")
        if bounded and self.channel_scales is not None and len(set(self.channel_scales)) > 1:
            raise SnnbenchError(f"layer {stage.name!r} is a Clip (bounded ReLU): its rate scale is one for all "
                                "channels (drop channel_scales)")
        start = {}
        if self.channel_voltage is not None and stage is not None:
            start = {"initial_state": {"voltage": self.per_neuron(stage, "channel_voltage", 0.0)}}
        elif self.initial_voltage == "half":
            start = {"initial_state": {"voltage": nengo.dists.Choice([0.5])}}
        if self.neuron == "lif":
            return nengo.LIF(tau_rc=self.tau_rc, tau_ref=self.tau_ref, amplitude=amplitude, **start)
        if self.neuron == "lif-rate":
            return nengo.LIFRate(tau_rc=self.tau_rc, tau_ref=self.tau_ref, amplitude=amplitude)
        if self.neuron == "if":
            bound = self.max_spikes(stage, dt) if bounded else np.inf
            return SignedIF(amplitude=amplitude, max_spikes=bound, **start)
        if self.neuron == "if-rectified":
            return nengo.SpikingRectifiedLinear(amplitude=amplitude, **start)
        if bounded:
            return ClippedRectifiedLinear(amplitude=amplitude, max_current=stage.upper * self.rate_scale)
        return nengo.RectifiedLinear(amplitude=amplitude)

    @property
    def spiking(self) -> bool:
        return self.neuron in SPIKING_NEURONS


@dataclass
class SimConfig:
    steps: int = option(30, "simulation time steps per image (the run's activity figures are taken at this count)",
                        positive(int))
    dt: float = option(0.001, "simulation time step (s)", positive(float))
    readout: str = option("mean", "logits: mean over all steps, the last step, or the mean over the second half",
                          choices=READOUTS)
    minibatch: int = option(100, "nengo-dl minibatch size", positive(int))
    simulator: str = option("nengo_dl", "nengo_dl (batched, TensorFlow) or nengo (the reference simulator, slow)",
                            choices=SIMULATORS)
    seed: int = 0            # network seed (LIF / IF initial voltages)

    def __post_init__(self):
        if self.steps < 1 or self.minibatch < 1 or not self.dt > 0:
            raise SnnbenchError(f"bad simulation settings {self}: steps >= 1, minibatch >= 1, dt > 0")
        check_choices(self)


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
    check_choice("readout", mode, READOUTS)
    if mode == "last":
        return outputs[:, steps - 1]
    first = steps // 2 if mode == "second-half" else 0
    return outputs[:, first: steps].mean(axis=1)


def params_document(layers: list, sim=None, source: dict | None = None) -> dict:
    """The --params-json document (:func:`load_params` reads it): per-layer parameters (LayerParams or
    their dicts), the simulation's settings (a SimConfig or a dict of overrides) and, where given,
    where they came from."""
    document = {"layers": [asdict(p) if is_dataclass(p) else dict(p) for p in layers],
                "sim": asdict(sim) if is_dataclass(sim) else dict(sim or {})}
    return document if source is None else {**document, "source": source}


def save_params(path, layers: list, sim: dict | None = None) -> Path:
    """Write per-layer parameters (and optional SimConfig overrides) in the --params-json format."""
    path = Path(path)
    path.write_text(json.dumps(params_document(layers, sim), indent=1))
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
    layer_keys = {f.name for f in fields(LayerParams)}
    sim_keys = {f.name for f in fields(SimConfig)}
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list) or not doc["layers"]:
        raise SnnbenchError(f"{source}: expected an object with a non-empty 'layers' list")
    unknown = {k for entry in doc["layers"] for k in entry} - layer_keys
    unknown |= {f"sim.{k}" for k in doc.get("sim", {})} - {f"sim.{k}" for k in sim_keys}
    if unknown:
        raise SnnbenchError(f"{source}: unknown keys {sorted(unknown)}; layer keys: {sorted(layer_keys)}, "
                            f"sim keys: {sorted(sim_keys)}")
    return [replace(defaults, **entry) for entry in doc["layers"]], dict(doc.get("sim", {}))


def _per_channel(scale, channels: int):
    """A scalar, or a per-element scale of a (C, H, W) tensor as one value per channel."""
    return scale if np.ndim(scale) == 0 else np.asarray(scale).reshape(channels, -1)[:, 0]


def _transform(op: LinearOp, scale=1.0):
    """``scale`` x the op as a Nengo transform; ``scale`` is a scalar or one factor per input element.
    A conv with explicit pads reads its input already padded (:func:`_connect_op`)."""
    if op.kind == "dense":
        return nengo.transforms.Dense((op.size_out, op.size_in), init=op.weight * scale)
    if op.kind == "conv":
        kernel = op.full_kernel() if op.groups > 1 or op.dilations != (1, 1) else op.weight
        kernel = kernel * np.reshape(_per_channel(scale, op.in_shape[0]), (1, -1, 1, 1))
        explicit = op.padding == "explicit"
        return nengo.Convolution(op.out_shape[0], op.padded_shape if explicit else op.in_shape,
                                 kernel.shape[2:], op.strides, "valid" if explicit else op.padding,
                                 channels_last=False, init=np.transpose(kernel, (2, 3, 1, 0)))  # (kh, kw, in, out)
    if op.kind in ("select", "pad"):
        if op.kind == "select":
            rows, columns = np.arange(op.size_out), op.indices()
        else:
            rows, columns = op.pad_indices(), np.arange(op.size_in)
        init = np.full(len(rows), scale, np.float64) if np.ndim(scale) == 0 else np.asarray(scale, np.float64)[columns]
        return nengo.transforms.Sparse((op.size_out, op.size_in), indices=np.stack([rows, columns], axis=1),
                                       init=init)
    channels = op.in_shape[0]  # avgpool: a per-channel convolution
    kernel = np.zeros((*op.kernel, channels, channels), np.float32)
    kernel[:, :, np.arange(channels), np.arange(channels)] = _per_channel(scale, channels) / np.prod(op.kernel)
    return nengo.Convolution(channels, op.in_shape, op.kernel, op.strides, "valid",
                             channels_last=False, init=kernel)


def _connect_op(obj, synapse, scale, op: LinearOp, post):
    """``obj`` -> ``op`` -> ``post``; a conv with explicit (e.g. asymmetric) pads first places its
    input into a zero-padded Node."""
    if op.kind == "conv" and op.padding == "explicit":
        padded = nengo.Node(size_in=int(np.prod(op.padded_shape)), label="conv_padded")
        pad = LinearOp("pad", op.in_shape, op.padded_shape, pads=op.pads)
        nengo.Connection(obj, padded, transform=_transform(pad, scale), synapse=synapse)
        obj, synapse, scale = padded, None, 1.0
    nengo.Connection(obj, post, transform=_transform(op, scale), synapse=synapse)


def _into(target, start: int, size: int):
    """``target`` or its slice ``[start, start + size)``."""
    return target if start == 0 and size == target.size_in else target[start: start + size]


def _connect_paths(paths: list, target, source, start: int = 0):
    """Connect the sum of ``paths`` into ``target`` (from element ``start`` on, for a Concat).

    ``source(index)`` gives the (object, synapse, output scale) carrying a population's output.
    Paths that end with the same op are summed in a pass-through Node and share one connection
    through the op (which carries the population's synapse when it reads one directly).
    """
    groups = {}
    for path in paths:
        if path.ops:
            groups.setdefault(id(path.ops[-1]), (path.ops[-1], []))[1].append(replace(path, ops=path.ops[:-1]))
        else:
            obj, synapse, out = source(path.source)
            nengo.Connection(obj, _into(target, start, obj.size_out), transform=path.scale * out, synapse=synapse)
    for op, inner in groups.values():
        if op.kind == "place":
            _connect_paths(inner, target, source, start + op.place_start)
            continue
        if len(inner) == 1 and not inner[0].ops:
            obj, synapse, out = source(inner[0].source)
            scale = inner[0].scale * out
        else:
            obj, synapse, scale = nengo.Node(size_in=op.size_in, label=f"{op.kind}_in"), None, 1.0
            _connect_paths(inner, obj, source)
        _connect_op(obj, synapse, scale, op, _into(target, start, op.size_out))


@dataclass
class SnnNetwork:
    network: nengo.Network
    inputs: dict          # feed key ("input", or "current:layer{i}" / "current:logits") -> Node
    output: nengo.Probe   # logits per step
    counters: list        # per hidden layer: Probe of its neurons' output per step (the activity's source)
    ensembles: list
    input_fan_out: np.ndarray


def build_network(model: ConvertedModel, layers: list, sim: SimConfig, node_output=None, counters: bool = True,
                  fed: tuple | None = None) -> SnnNetwork:
    """The Nengo network for ``model``: ensemble ``layer{i}`` for ``model.hidden[i]`` (max-pool helper
    populations included), then the logits Node.

    ``fed`` (stage indices, see :func:`fed_stages`): each of these stages takes a current as data,
    Node ``current:<stage>`` of its size (:func:`stage_currents`: its input from the network input
    and from noise), and there is no pixel input; None: the pixels are Node ``input``. ``node_output(key,
    size)`` gives each input Node's output (default: zeros, data fed by nengo_dl); the reference
    simulator passes callables.
    """
    layers = layer_list(layers, len(model.hidden))
    node_output = node_output or (lambda key, size: np.zeros(size))
    if fed is not None and not set(fed) >= set(fed_stages(model)):
        raise SnnbenchError(f"stages {fed_stages(model)} read the network input: they must all take currents, got {fed}")
    inputs = {}

    def connect(stage: Stage, target):
        """``stage``'s paths into ``target``, a fed stage's paths from the input replaced by its current Node."""
        paths = stage.paths
        if fed is not None and stage.index in fed:
            key = f"current:{stage_key(stage)}"
            inputs[key] = nengo.Node(node_output(key, stage.size_out), label=key)
            nengo.Connection(inputs[key], target, synapse=None)
            paths = [p for p in paths if p.source != INPUT]
        _connect_paths(paths, target, outputs.__getitem__)

    with nengo.Network(seed=sim.seed, label="converted SNN") as net:
        outputs = {}  # source index -> (object, synapse, scale) of its output
        if fed is None:
            inputs["input"] = nengo.Node(node_output("input", model.n_inputs), label="input")
            outputs[INPUT] = (inputs["input"], None, 1.0)
        ensembles, counter_probes = [], []
        for i, (stage, params) in enumerate(zip(model.hidden, layers)):
            factors = params.per_neuron(stage, "channel_scales", 1.0)  # per-channel rate scales
            rs = params.rate_scale * factors
            bias = params.bias_scale * stage.bias + params.bias_offset + params.per_neuron(stage, "channel_bias", 0.0)
            ens = nengo.Ensemble(stage.size_out, 1, neuron_type=params.neuron_type(stage, sim.dt),
                                 gain=params.gain * rs, bias=rs * bias, label=f"layer{i}",
                                 seed=sim.seed + i)  # own seed: initial voltages must not depend on the other nodes
            connect(stage, ens.neurons)
            out = 1.0 if params.channel_scales is None else 1.0 / factors  # the neurons' amplitude is 1 / rate_scale
            outputs[i] = (ens.neurons, params.synapse, out)
            ensembles.append(ens)
            if counters:
                counter_probes.append(nengo.Probe(ens.neurons, synapse=None))
        logits = nengo.Node(size_in=model.n_outputs, label="logits")
        connect(model.stages[-1], logits)
        bias = nengo.Node(model.stages[-1].bias, label="output_bias")
        nengo.Connection(bias, logits, synapse=None)
        probe = nengo.Probe(logits, synapse=None)
    return SnnNetwork(net, inputs, probe, counter_probes, ensembles, model.fan_out(INPUT))


def stage_key(stage: Stage) -> str:
    """A stage's name in feed keys and noise draws: ``layer{i}`` (hidden) or ``logits``."""
    return f"layer{stage.index}" if stage.activation else "logits"


def fed_stages(model: ConvertedModel, position: str = "none") -> tuple:
    """The stages that take a current as data with noise at ``position``: those that read the network
    input (the non-spiking input layer, input noise), and with ``pre`` noise every hidden stage,
    with ``post`` noise every stage that reads a hidden one."""
    fed = {s.index for s in model.stages if INPUT in s.sources}
    if position == "pre":
        fed |= {s.index for s in model.hidden}
    elif position == "post":
        fed |= {s.index for s in model.stages if any(source != INPUT for source in s.sources)}
    return tuple(sorted(fed))


def stage_currents(model: ConvertedModel, fed: tuple, values: dict) -> dict:
    """Feed key ``current:<stage>`` -> the current each stage in ``fed`` takes as data: its paths
    (without biases) from the sources in ``values`` (source index -> float32 ``(n, t, size)``, ``t``
    steps or 1 for a value held over the steps: the network input, a hidden stage's post noise).
    Held values give ``(n, 1, size)``: a non-spiking input layer computed once per sample rather than
    at every step. The ops are linear, so each source's part is computed on its own."""
    currents = {}
    with torch.no_grad():
        for index in fed:
            stage = model.stages[index]
            current = np.zeros((1, 1, stage.size_out), np.float32)
            for source, value in values.items():
                paths = [p for p in stage.paths if p.source == source]
                if paths:
                    n, t = value.shape[:2]
                    flat = torch.as_tensor(np.ascontiguousarray(value, np.float32).reshape(n * t, -1))
                    current = current + sum_paths(paths, lambda _: flat).numpy().reshape(n, t, -1)
            currents[f"current:{stage_key(stage)}"] = current
    return currents
