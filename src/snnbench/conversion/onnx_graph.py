"""Reading an ONNX graph: its tensors as sums of linear paths, and the populations found so far.

:class:`GraphReader` walks the nodes of the graph at batch 1 (:func:`load_model`; the handlers are in
:mod:`snnbench.conversion.onnx_ops`): every data tensor is a :class:`Value`, a sum of paths from the
input or earlier populations plus a constant bias, shaped as the tensor is (batch axis of 1
included), and each ReLU (or Clip) makes the tensor it reads a population (a :class:`Stage`).
Reshapes of any kind keep the values in their order, so they only change the shape.
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from snnbench.conversion.graph import INPUT, LinearOp, LinearPath, Stage
from snnbench.conversion.onnx_prepare import fixed_batch, load
from snnbench.errors import UnsupportedModelError


def node_name(node) -> str:
    return node.name or (node.output[0] if node.output else "?")


def unsupported(node, why: str):
    raise UnsupportedModelError(f"cannot convert ONNX op {node.op_type!r} at node {node_name(node)!r}: {why}")


def load_model(path) -> onnx.ModelProto:
    """The ONNX file as the converter reads it: checked, at batch 1, shape computations folded."""
    return fixed_batch(load(path))


def as_array(tensor) -> np.ndarray:
    value = numpy_helper.to_array(tensor)
    return value.astype(np.float32) if value.dtype.kind == "f" else value


def attributes(node) -> dict:
    """The node's attributes, strings decoded."""
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def sample_shape(shape: tuple) -> tuple:
    """A tensor's shape without its leading batch axis of 1 (a 1-D tensor is one sample)."""
    return tuple(shape[1:]) if len(shape) > 1 and shape[0] == 1 else tuple(shape)


@dataclass
class Value:
    """A data tensor of the graph: sum of ``paths`` + ``bias``, shaped ``shape`` (the tensor's shape at
    batch 1); ``nonnegative`` where every value is >= 0 (a population's output, moved or pooled)."""
    paths: list
    bias: np.ndarray  # flat, float64
    shape: tuple
    nonnegative: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def sample_shape(self) -> tuple:
        return sample_shape(self.shape)

    def common_last_op(self, kinds=("dense", "conv")) -> LinearOp | None:
        """The op of ``kinds`` that every path ends with, if there is one."""
        if not all(p.ops for p in self.paths) or len({id(p.ops[-1]) for p in self.paths}) != 1:
            return None
        op = self.paths[0].ops[-1]
        return op if op.kind in kinds else None

    def with_last_op(self, op: LinearOp | None) -> "Value":
        """The same paths with their (common) last op replaced by ``op`` (removed if None)."""
        return Value([LinearPath(p.source, p.ops[:-1] + ([op] if op is not None else []), p.scale) for p in self.paths],
                     self.bias, self.shape, self.nonnegative)

    def reshaped(self, shape: tuple) -> "Value":
        return Value(self.paths, self.bias, tuple(int(s) for s in shape), self.nonnegative)

    def scaled(self, factor: float) -> "Value":
        return Value([LinearPath(p.source, p.ops, p.scale * factor) for p in self.paths], self.bias * factor, self.shape,
                     self.nonnegative and factor > 0)


class GraphReader:
    """The walk over the graph: each data tensor as a Value, the constants, the stages so far."""

    def __init__(self, model: onnx.ModelProto, maxpool: str):
        graph = model.graph
        self.consts = {t.name: as_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedModelError(f"the ONNX graph has {len(inputs)} data inputs; a classifier takes one")
        if len(graph.output) != 1:
            raise UnsupportedModelError(f"the ONNX graph has {len(graph.output)} outputs "
                                        f"({', '.join(o.name for o in graph.output)}); name the class scores' one "
                                        "with --output")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) < 2 or any(d <= 0 for d in dims[1:]):
            raise UnsupportedModelError(f"input {inputs[0].name!r} needs fixed feature dimensions (N, features) or "
                                        f"(N, C, H, W), got {dims[1:]} after the batch axis")
        shape = (1, *dims[1:])
        self.input_shape = tuple(dims[1:])
        self.values = {inputs[0].name: Value([LinearPath(INPUT)], np.zeros(int(np.prod(shape))), shape)}
        self.output = graph.output[0].name
        self.stages, self.approximations, self.maxpool = [], [], maxpool
        self.readers = Counter(name for node in graph.node for name in node.input)  # tensor -> nodes reading it

    def value(self, node, index: int = 0) -> Value:
        name = node.input[index]
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            unsupported(node, f"input {name!r} must be a data tensor, not a constant")
        unsupported(node, f"input {name!r} is not the output of a supported node")

    def const(self, node, name) -> np.ndarray:
        if name not in self.consts:
            unsupported(node, f"{name!r} must be a constant (initializer)")
        return self.consts[name]

    def set(self, node, value: Value):
        self.values[node.output[0]] = value

    def linear(self, value: Value, op: LinearOp, shape: tuple | None = None) -> Value:
        """``op`` applied to ``value`` (its bias included); the result shaped ``shape`` (default: the
        op's output with a batch axis)."""
        bias = op.apply(torch.as_tensor(value.bias)[None], with_bias=True)[0].numpy()
        nonnegative = value.nonnegative and op.kind in ("select", "place", "pad", "avgpool")
        return Value([LinearPath(p.source, p.ops + [op], p.scale) for p in value.paths], bias,
                     shape or (1, *op.out_shape), nonnegative)

    def population(self, value: Value, name: str, upper: float | None = None) -> Value:
        """A hidden stage holding relu(value) (bounded at ``upper``); returns its output as a Value."""
        self.stages.append(Stage(value.paths, value.bias.astype(np.float64), True, value.sample_shape, name,
                                 upper=upper))
        return Value([LinearPath(len(self.stages) - 1)], np.zeros(value.size), value.shape, True)

    def population_of(self, value: Value):
        """The stage whose output ``value`` is, unchanged (no ops, no bias), or None."""
        path = value.paths[0]
        plain = len(value.paths) == 1 and path.source != INPUT and not path.ops and path.scale == 1
        return self.stages[path.source] if plain and not value.bias.any() else None

    def require_row(self, node, value: Value, n_in: int):
        """A dense layer reads one row of ``n_in`` features (every other axis of size 1)."""
        if not value.shape or value.shape[-1] != n_in:
            unsupported(node, f"expected rows of {n_in} features, got a tensor of shape {value.shape}")
        if value.size > n_in:
            unsupported(node, f"a product over {value.size // n_in} rows of {n_in} features (a sequence or attention "
                        "layer) is no layer of a feed-forward classifier")
