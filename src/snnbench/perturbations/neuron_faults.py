"""Faults of a network's neurons: saturated neurons, threshold variation and spike deletion.

A neuron is unit ``j`` of hidden layer ``i`` (``layer{i}``, the key of every draw): in an ONNX graph,
output unit ``j`` of its ``i``-th ReLU (:func:`~snnbench.conversion.onnx_noise.hidden_activations`, the
hidden layers Gaussian noise reaches; a convolution's unit is an output channel, a whole feature map),
in the suite's snntorch SNN neuron ``j`` of hidden layer ``i``. Draws are keyed by (seed, family, level,
``layer{i}``), so ONNX Runtime, the converted SNN and an SNN of the same widths have the same faulty
neurons.

* ``saturated_neurons``: a fraction of each hidden layer's neurons stuck at their largest output, whatever
  their input: in a DNN (and the converted SNN, which then fires at the rate coding it) the layer's largest
  activation on a seeded 1,000 of the training inputs (calibration's samples), in the snntorch SNN a spike
  every step. Written into the layer's weights: the neuron's incoming weights zero, its bias that value
  (an snntorch neuron: twice its threshold). DNN counterpart: the same stuck activation (a stuck-at-high
  ReLU unit).
* ``threshold_variation``: each spiking neuron's threshold multiplied by ``1 + std * N(0, 1)`` (floored at
  0.1: a threshold stays positive), device-to-device variation of neuromorphic neurons. For an IF or LIF
  neuron (reset by subtraction or to zero, starting at a fraction of its threshold) a threshold ``t`` is
  its input current divided by ``t``, so it is written as the neuron's incoming weights and bias divided by
  ``t``. DNN counterpart: each ReLU unit's gain divided by ``t`` (the same file in ONNX Runtime), which a
  rate-coded neuron computes exactly.
* ``spike_deletion``: each spike of a hidden neuron lost with probability ``p`` on its way to the next
  layer (the neuron fires and resets as usual; a lost spike is not counted), in the simulation itself:
  nengo-snn's IF neurons (:class:`~snnbench.conversion.neurons.LossyIF`, a binomial draw of each step's
  spikes), the Loihi emulator's on-chip compartments (:class:`~snnbench.engines.loihi.SpikeLoss`, a
  Bernoulli draw per compartment and step; the off-chip input layer, the pixels' encoding, keeps its
  spikes as nengo-snn's current input does) and the snntorch SNN. No DNN counterpart: a DNN emits no
  spikes (in expectation the loss scales each activation by ``1 - p``, which the next layer's weights
  could absorb), so ``ort-dnn`` is refused.

The converted SNN is calibrated on the fault-free network and runs the faulty one (the neurons fail on
the chip, after conversion).
"""

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from snnbench.engines import LOIHI_EMULATOR, NENGO_SNN, ORT_DNN, SNNTORCH_SNN
from snnbench.errors import ConfigError, UnsupportedModelError
from snnbench.perturbations import Perturbation, Target, keyed_rng, register
from snnbench.perturbations.weight_faults import FRACTIONS, RelativeStds, WeightFault, chosen

SPIKING = (NENGO_SNN, LOIHI_EMULATOR, SNNTORCH_SNN)
THRESHOLD_FLOOR = 0.1
PEAK_SAMPLES = 1000  # training inputs whose largest activation a saturated neuron is stuck at (calibration's)


@dataclass(frozen=True)
class NeuronLayer:
    """Hidden layer ``i``'s producer in an ONNX graph: its weight and bias initializers, the weight's axis
    of the layer's units, and the activation's output (whose largest value a saturated neuron takes)."""
    key: str
    weight: str
    bias: str
    out_axis: int
    activation: str


def _initializer_names(model) -> set:
    return {t.name for t in model.graph.initializer}


def neuron_layers(model: onnx.ModelProto) -> list[NeuronLayer]:
    """Every hidden layer of ``model`` with its producer, a bias initializer added where a Gemm or Conv has
    none (``model`` is changed); a layer fed by another node is refused in one line."""
    from snnbench.conversion.onnx_noise import hidden_activations

    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = _initializer_names(model)
    layers = []
    for i, activation in enumerate(hidden_activations(model)):
        node = producers.get(activation.input[0])
        bias_node = None
        if node is not None and node.op_type == "Add":
            constant = [x for x in node.input if x in initializers]
            other = [x for x in node.input if x not in initializers]
            matmul = producers.get(other[0]) if len(constant) == 1 and len(other) == 1 else None
            if matmul is not None and matmul.op_type == "MatMul" and matmul.input[1] in initializers:
                node, bias_node = matmul, constant[0]
        if node is None or node.op_type not in ("Gemm", "Conv", "MatMul") or len(node.input) < 2 \
                or node.input[1] not in initializers or (node.op_type == "MatMul" and bias_node is None):
            kind = node.op_type if node is not None else "the graph input"
            raise UnsupportedModelError(f"neuron faults change the Gemm, Conv or MatMul + Add whose weights feed "
                                        f"each ReLU, but ReLU {activation.output[0]!r} is fed by {kind}; "
                                        "fold that node into its layer's weights first")
        weight = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == node.input[1]))
        out_axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and any(
            a.name == "transB" and a.i for a in node.attribute)) else 1
        if bias_node is None:
            if len(node.input) < 3 or not node.input[2]:  # a Gemm or Conv without bias: a zero one
                name = f"{node.input[1]}_neuron_bias"
                model.graph.initializer.append(numpy_helper.from_array(
                    np.zeros(weight.shape[out_axis], weight.dtype), name))
                del node.input[2:]
                node.input.append(name)
            bias_node = node.input[2]
            if bias_node not in initializers | {f"{node.input[1]}_neuron_bias"}:
                raise UnsupportedModelError(f"neuron faults write each layer's bias, but the bias of ReLU "
                                            f"{activation.output[0]!r}'s layer is computed ({bias_node!r})")
        layers.append(NeuronLayer(f"layer{i}", node.input[1], bias_node, out_axis, activation.output[0]))
    return layers


def layer_peaks(model: onnx.ModelProto, layers: list, inputs: np.ndarray, seed: int) -> dict:
    """Each layer's largest activation on a seeded ``PEAK_SAMPLES`` of ``inputs`` (ONNX Runtime)."""
    from onnx import helper

    from snnbench.conversion.calibration import calibration_inputs
    from snnbench.engines.ort import OrtRunner

    probe = copy.deepcopy(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(layer.activation) for layer in layers)
    outputs = OrtRunner(probe.SerializeToString()).predict_outputs(calibration_inputs(inputs, PEAK_SAMPLES, seed))
    return {layer.key: float(np.max(out)) for layer, out in zip(layers, outputs)}


def _copy(module):
    """A fresh copy of the suite's SNN (its definition and weights; no state of an earlier run)."""
    from snnbench.models.multimodal import build_model

    faulty = build_model(module.spec)
    faulty.load_state_dict(module.state_dict())
    return faulty.to(next(module.parameters()).device).train(module.training)


@dataclass(frozen=True)
class NeuronFault(WeightFault):
    """A fault of each hidden layer's neurons, written into the weights (:meth:`change`) of an ONNX file
    (:meth:`apply`) or of the snntorch SNN (:meth:`perturb_module`)."""
    kind = "neurons"
    engines = (ORT_DNN, *SPIKING)
    needs_inputs = False  # whether apply needs training inputs (the layers' largest activations)

    @staticmethod
    def neuron_layers(onnx_file) -> list:
        """The hidden layers of ``onnx_file`` this fault changes (one line if one cannot be changed)."""
        return neuron_layers(onnx.load(str(onnx_file)))

    def change(self, weight: np.ndarray, bias: np.ndarray, key: str, level: float, seed: int,
               peak: float) -> tuple[np.ndarray, np.ndarray]:
        """A layer's weight (units first) and bias with the fault of ``level``; ``peak``: a neuron's largest output."""
        raise NotImplementedError

    def apply(self, onnx_file, out_file, level: float, seed: int, inputs: np.ndarray | None = None) -> Path:
        """A copy of ``onnx_file`` at ``out_file`` with the fault written into its layers' weights
        (``inputs``: the training inputs, for a family that needs them)."""
        if self.needs_inputs and inputs is None:
            raise ConfigError(f"perturbation {self.name} needs the model's training inputs")
        model = onnx.load(str(onnx_file))
        layers = neuron_layers(model)
        peaks = layer_peaks(model, layers, inputs, seed) if self.needs_inputs else {}
        tensors = {t.name: i for i, t in enumerate(model.graph.initializer)}
        for layer in layers:
            weight = numpy_helper.to_array(model.graph.initializer[tensors[layer.weight]])
            bias = numpy_helper.to_array(model.graph.initializer[tensors[layer.bias]])
            units = np.moveaxis(weight.astype(np.float64), layer.out_axis, 0)
            if bias.size not in (1, units.shape[0]):
                raise UnsupportedModelError(f"the bias {layer.bias!r} of layer {layer.key} has {bias.size} values "
                                            f"for {units.shape[0]} units")
            flat_bias = np.broadcast_to(bias.astype(np.float64).reshape(-1), (units.shape[0],)).copy()
            units, flat_bias = self.change(units, flat_bias, layer.key, level, seed, peaks.get(layer.key, 0.0))
            weight_out = np.moveaxis(units, 0, layer.out_axis).astype(weight.dtype)
            shape = bias.shape if bias.size == len(flat_bias) else (len(flat_bias),)
            for name, value in ((layer.weight, weight_out), (layer.bias, flat_bias.reshape(shape).astype(bias.dtype))):
                model.graph.initializer[tensors[name]].CopyFrom(numpy_helper.from_array(value, name))
        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out_file))
        return Path(out_file)

    def perturb_module(self, module, level: float, seed: int):
        """A copy of the suite's snntorch SNN (``SpikingMLP``) with the fault in its hidden layers."""
        from snnbench.models.spiking import THRESHOLD

        faulty = _copy(module)
        with torch.no_grad():
            for i, linear in enumerate(faulty.linears[:-1]):
                weight, bias = self.change(linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy(),
                                           f"layer{i}", level, seed, 2 * THRESHOLD)  # fires every step
                linear.weight.copy_(torch.as_tensor(weight))
                linear.bias.copy_(torch.as_tensor(bias))
        return faulty


@register("saturated_neurons")
@dataclass(frozen=True)
class SaturatedNeurons(NeuronFault):
    """A fraction of each hidden layer's neurons stuck at the layer's largest output."""
    levels: tuple = FRACTIONS
    quick: tuple = (0.1,)
    needs_inputs = True

    def change(self, weight, bias, key, level, seed, peak):
        stuck = chosen(len(bias), level, keyed_rng(seed, self.name, level, key))
        weight, bias = weight.copy(), bias.copy()
        weight[stuck] = 0
        bias[stuck] = peak
        return weight, bias


def thresholds(units: int, key: str, std: float, seed: int, name: str = "threshold_variation") -> np.ndarray:
    """Layer ``key``'s thresholds relative to the nominal one: ``1 + std * N(0, 1)``, at least 0.1."""
    return np.maximum(1 + std * keyed_rng(seed, name, std, key).standard_normal(units), THRESHOLD_FLOOR)


@register("threshold_variation")
@dataclass(frozen=True)
class ThresholdVariation(RelativeStds, NeuronFault):
    """Each hidden neuron's threshold times ``1 + std * N(0, 1)`` (its gain divided by it)."""

    def change(self, weight, bias, key, level, seed, peak):
        t = thresholds(len(bias), key, level, seed, self.name)
        return weight / t.reshape(-1, *[1] * (weight.ndim - 1)), bias / t


@register("spike_deletion")
@dataclass(frozen=True)
class SpikeDeletion(Perturbation):
    """Each hidden spike lost with probability ``p``, drawn in the simulation (not in the weights)."""
    kind = "neurons"
    engines = SPIKING
    simulated = (NENGO_SNN, LOIHI_EMULATOR)  # the engines that take it as a setting (engine_settings)
    level_name = "probability"
    level_help = "probabilities from 0 to 1"
    levels: tuple = (0.05, 0.1, 0.2, 0.5)
    quick: tuple = (0.2,)

    def valid_level(self, level: float) -> bool:
        return 0 <= level <= 1

    def check(self, target: Target) -> None:
        if target.engine == ORT_DNN:
            raise UnsupportedModelError("perturbation spike_deletion deletes spikes, which a DNN does not emit (no "
                                        f"DNN counterpart); it applies to {', '.join(SPIKING)}")
        super().check(target)

    def generator_seed(self, level: float, seed: int, key: str) -> int:
        """The seed of layer ``key``'s deletion draws (a simulation's spikes differ by engine, so its draws
        are reproducible per engine, not shared)."""
        return int(keyed_rng(seed, self.name, level, key).integers(2 ** 31 - 64))

    def engine_settings(self, engine: str, level: float, seed: int) -> dict:
        """The setting of ``engine`` (nengo-snn or loihi-emulator): each hidden spike lost with probability
        ``level``, layer ``i``'s draws seeded from the engine's seed plus ``i``."""
        if engine not in self.simulated:
            raise UnsupportedModelError(f"spike deletion is a setting of {', '.join(self.simulated)}, not of {engine}")
        return {"spike_loss": (float(level), self.generator_seed(level, seed, engine))}

    def perturb_module(self, module, level: float, seed: int):
        """A copy of the suite's snntorch SNN whose hidden spikes are each lost with probability ``level``."""
        faulty = _copy(module)
        for i, neuron in enumerate(faulty.neurons):
            faulty.neurons[i] = _LossySpikes(neuron, level, self.generator_seed(level, seed, f"layer{i}"))
        return faulty


class _LossySpikes(torch.nn.Module):
    """An snntorch neuron whose emitted spikes are each kept with probability ``1 - p`` (it fires and
    resets as before: snntorch resets from its membrane, not from the spikes it returned)."""

    def __init__(self, neuron, p: float, seed: int):
        super().__init__()
        self.neuron, self.p = neuron, float(p)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, current, mem):
        spikes, mem = self.neuron(current, mem)
        kept = torch.rand(spikes.shape, generator=self.generator) >= self.p
        return spikes * kept.to(spikes.device, spikes.dtype), mem
