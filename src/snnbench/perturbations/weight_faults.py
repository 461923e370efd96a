"""Faults and limited precision of a network's weights, written into a copy of its ONNX file.

The weights are the initializers of its Gemm, MatMul and Conv nodes (biases are left as they are), so
ONNX Runtime runs the perturbed file and the converter reads the very same perturbed weights: each
family is exact in every engine that takes the file (``ort-dnn``, ``nengo-snn``, ``loihi-emulator``;
the Loihi emulator then stores them in its own fixed point). Draws are keyed by (seed, family, level,
the weight's name), so a file gets the same faults in every engine and process.

* ``quantise`` / ``quantise_channel``: weights rounded to ``n``-bit signed integers times one scale per
  layer / per output channel (symmetric, the largest magnitude kept); Loihi stores weights in at most 8
  bits. DNN counterpart: post-training weight quantisation.
* ``weight_noise``: each weight multiplied by ``1 + std * N(0, 1)``, device-to-device variation of analog or
  memristive synapses (Spyrou et al., DATE 2021). DNN counterpart: the same multiplicative noise.
* ``stuck_at_zero``: a fraction of the synapses (of each layer, drawn without replacement) set to zero
  (Schuman et al., IJCNN 2020). DNN counterpart: random unstructured pruning without fine-tuning.
* ``dead_neurons``: a fraction of the hidden neurons (of each layer that a ReLU feeds) whose outgoing
  weights are all zero, so nothing they emit reaches the next layer: a fully connected layer's input
  features (one neuron each, a flattened feature map's pixels included), or a convolution's input
  channels (a whole feature map). DNN counterpart: dropout at inference without rescaling.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from snnbench.engines import LOIHI_EMULATOR, NENGO_SNN, ORT_DNN
from snnbench.errors import UnsupportedModelError
from snnbench.perturbations import Perturbation, keyed_rng, register

FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)
BITS = (8, 6, 4, 3, 2)


@dataclass(frozen=True)
class WeightTensor:
    """A weight initializer: its name, the axes of its output and input units, the name of the tensor
    its node reads (the data), and whether a ReLU lies upstream of that tensor (a hidden layer feeds it)."""
    name: str
    out_axis: int
    in_axis: int
    data: str
    hidden_input: bool


def _attribute(node, name: str, default):
    found = [a for a in node.attribute if a.name == name]
    return onnx.helper.get_attribute_value(found[0]) if found else default


def weight_tensors(model: onnx.ModelProto) -> list[WeightTensor]:
    """The Gemm / MatMul / Conv weights that are initializers, in graph order (each once)."""
    initializers = {t.name: t for t in model.graph.initializer}
    after_relu, out, seen = set(), [], set()
    for node in model.graph.node:  # graph order is topological in a valid ONNX file
        if node.op_type == "Relu" or any(i in after_relu for i in node.input):
            after_relu.update(node.output)
        if len(node.input) < 2 or node.input[1] not in initializers or node.input[1] in seen:
            continue
        rank = len(initializers[node.input[1]].dims)
        if node.op_type == "Gemm":
            out_axis = 0 if _attribute(node, "transB", 0) else 1
        elif node.op_type == "MatMul" and rank == 2:
            out_axis = 1
        elif node.op_type == "Conv":
            out_axis = 0
        else:
            continue
        seen.add(node.input[1])
        in_axis = 1 if out_axis == 0 else 0
        out.append(WeightTensor(node.input[1], out_axis, in_axis, node.input[0], node.input[0] in after_relu))
    return out


@dataclass(frozen=True)
class WeightFault(Perturbation):
    """A fault of the weights of an ONNX file; subclasses implement :meth:`perturb`."""
    kind = "weights"
    engines = (ORT_DNN, NENGO_SNN, LOIHI_EMULATOR)
    level_name = "fraction"
    level_help = "fractions from 0 to 1"

    def valid_level(self, level: float) -> bool:
        return 0 <= level <= 1

    def perturb(self, weight: np.ndarray, tensor: WeightTensor, level: float, seed: int) -> np.ndarray:
        raise NotImplementedError

    def apply(self, onnx_file, out_file, level: float, seed: int) -> Path:
        """A copy of ``onnx_file`` at ``out_file`` with its weights perturbed at ``level``."""
        model = onnx.load(str(onnx_file))
        tensors = weight_tensors(model)
        if not tensors:
            raise UnsupportedModelError(f"{onnx_file}: no Gemm, MatMul or Conv weight is an initializer, so "
                                        f"perturbation {self.name} has no weight to perturb")
        by_name = {t.name: t for t in tensors}
        for i, initializer in enumerate(model.graph.initializer):
            if initializer.name in by_name:
                weight = numpy_helper.to_array(initializer)
                changed = self.perturb(weight.astype(np.float64), by_name[initializer.name], level, seed)
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(changed.astype(weight.dtype),
                                                                            initializer.name))
        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out_file))
        return Path(out_file)


def quantised(weight: np.ndarray, bits: int, axis: int | None) -> np.ndarray:
    """``weight`` on a symmetric ``bits``-bit grid, one scale for all (``axis`` None) or per slice of ``axis``."""
    levels = 2 ** (int(bits) - 1) - 1
    reduce = None if axis is None else tuple(a for a in range(weight.ndim) if a != axis)
    scale = np.max(np.abs(weight), axis=reduce, keepdims=axis is not None) / levels
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.round(weight / scale), -levels, levels) * scale


@register("quantise")
@dataclass(frozen=True)
class Quantise(WeightFault):
    """Per-layer ``n``-bit weights."""
    level_name = "bits"
    level_help = "whole numbers of bits from 2 to 16"
    levels: tuple = BITS
    quick: tuple = (4,)

    def valid_level(self, level: float) -> bool:
        return float(level).is_integer() and 2 <= level <= 16

    def perturb(self, weight, tensor, level, seed):
        return quantised(weight, level, None)


@register("quantise_channel")
@dataclass(frozen=True)
class QuantiseChannel(Quantise):
    """Per-output-channel ``n``-bit weights."""
    quick: tuple = (4,)

    def perturb(self, weight, tensor, level, seed):
        return quantised(weight, level, tensor.out_axis)


@dataclass(frozen=True)
class RelativeStds(Perturbation):
    """Levels that are standard deviations of a multiplicative fault (``1 + std * N(0, 1)``)."""
    level_name = "std"
    level_help = "stds >= 0"
    levels: tuple = (0.05, 0.1, 0.2, 0.5, 1.0)
    quick: tuple = (0.2,)

    def valid_level(self, level: float) -> bool:
        return level >= 0


@register("weight_noise")
@dataclass(frozen=True)
class WeightNoise(RelativeStds, WeightFault):
    """Multiplicative Gaussian weight noise of standard deviation ``level``."""

    def perturb(self, weight, tensor, level, seed):
        return weight * (1 + level * keyed_rng(seed, self.name, level, tensor.name).standard_normal(weight.shape))


def chosen(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``round(fraction * n)`` distinct indices of ``range(n)``."""
    return rng.permutation(n)[:int(round(fraction * n))]


@register("stuck_at_zero")
@dataclass(frozen=True)
class StuckAtZero(WeightFault):
    """A fraction of each layer's synapses stuck at zero."""
    levels: tuple = FRACTIONS
    quick: tuple = (0.1,)

    def perturb(self, weight, tensor, level, seed):
        flat = weight.reshape(-1).copy()
        flat[chosen(flat.size, level, keyed_rng(seed, self.name, level, tensor.name))] = 0
        return flat.reshape(weight.shape)


@register("dead_neurons")
@dataclass(frozen=True)
class DeadNeurons(WeightFault):
    """A fraction of each hidden layer's neurons with no outgoing weight (keyed by the tensor they emit,
    so every layer reading it loses the same neurons)."""
    levels: tuple = FRACTIONS
    quick: tuple = (0.1,)

    def perturb(self, weight, tensor, level, seed):
        if not tensor.hidden_input:
            return weight
        units = weight.shape[tensor.in_axis]
        dead = chosen(units, level, keyed_rng(seed, self.name, level, tensor.data))
        out = weight.copy()
        index = [slice(None)] * weight.ndim
        index[tensor.in_axis] = dead
        out[tuple(index)] = 0
        return out
