"""Reading an ONNX graph: its tensors as sums of linear paths, and the populations found so far.

:class:`GraphReader` walks the nodes in order (the handlers are in :mod:`snnbench.conversion.onnx_ops`):
every data tensor is a :class:`Value`, a sum of paths from the input or earlier populations plus a
constant bias, and each ReLU (or Clip) makes the tensor it reads a population (a :class:`Stage`). A static
batch dimension in the export (input ``(1, C, H, W)``, as torch.onnx.export writes without
``dynamic_axes``) is recorded as ``batch``: reshapes may name it.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path as FilePath

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from snnbench.conversion.graph import INPUT, LinearOp, Path, Stage
from snnbench.errors import DataError, UnsupportedModelError

SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Relu", "Clip", "Pad", "Flatten", "Reshape", "Conv", "AveragePool",
                 "GlobalAveragePool", "MaxPool", "Concat", "BatchNormalization", "Identity", "Dropout",
                 "Constant")  # each has its handler in onnx_ops.HANDLERS


def node_name(node) -> str:
    return node.name or (node.output[0] if node.output else "?")


def unsupported(node, why: str = ""):
    detail = f": {why}" if why else ""
    raise UnsupportedModelError(f"unsupported ONNX op {node.op_type!r} at node {node_name(node)!r}{detail}; "
                                f"supported ops: {', '.join(SUPPORTED_OPS)}")


def load_model(path) -> onnx.ModelProto:
    path = FilePath(path)
    if not path.is_file():
        raise DataError(f"ONNX model {path} not found; pass the path of a .onnx file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several types for malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a valid ONNX model ({first[:200]}); export it again with "
                        "torch.onnx.export") from None
    return model


def as_array(tensor) -> np.ndarray:
    value = numpy_helper.to_array(tensor)
    return value.astype(np.float32) if value.dtype.kind == "f" else value


def attributes(node) -> dict:
    """The node's attributes, strings decoded."""
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


@dataclass
class Value:
    """A data tensor of the graph: sum of ``paths`` + ``bias``, per sample of shape ``shape``."""
    paths: list
    bias: np.ndarray  # flat, float64
    shape: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def common_last_op(self) -> LinearOp | None:
        """The dense / conv op that every path ends with, if there is one."""
        if not all(p.ops for p in self.paths) or len({id(p.ops[-1]) for p in self.paths}) != 1:
            return None
        op = self.paths[0].ops[-1]
        return op if op.kind in ("dense", "conv") else None

    def with_last_op(self, op: LinearOp) -> "Value":
        """The same paths with their (common) last op replaced by ``op``."""
        return Value([Path(p.source, p.ops[:-1] + [op], p.scale) for p in self.paths], self.bias, self.shape)


class GraphReader:
    """The walk over the graph: each data tensor as a Value, the constants, the stages so far."""

    def __init__(self, model: onnx.ModelProto, maxpool: str):
        graph = model.graph
        self.consts = {t.name: as_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise UnsupportedModelError(f"the ONNX graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
                                        "only single-input single-output classifiers can be converted")
        declared = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        dims = declared[1:]
        self.batch = declared[0] if declared and declared[0] > 0 else None  # a static batch size
        if not dims or any(d <= 0 for d in dims):
            raise UnsupportedModelError(f"input {inputs[0].name!r} needs fixed feature dimensions (N, features) or "
                                        f"(N, C, H, W), got {dims} after the batch axis")
        self.input_shape = tuple(dims)
        self.values = {inputs[0].name: Value([Path(INPUT)], np.zeros(int(np.prod(dims))), self.input_shape)}
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

    def linear(self, value: Value, op: LinearOp) -> Value:
        """``op`` applied to ``value`` (its bias included)."""
        bias = op.apply(torch.as_tensor(value.bias)[None], with_bias=True)[0].numpy()
        return Value([Path(p.source, p.ops + [op], p.scale) for p in value.paths], bias, op.out_shape)

    def population(self, value: Value, name: str, upper: float | None = None) -> Value:
        """A hidden stage holding relu(value) (bounded at ``upper``); returns its output as a Value."""
        self.stages.append(Stage(value.paths, value.bias.astype(np.float64), True, value.shape, name,
                                 upper=upper))
        return Value([Path(len(self.stages) - 1)], np.zeros(value.size), value.shape)

    def population_of(self, value: Value):
        """The stage whose output ``value`` is, unchanged (no ops, no bias), or None."""
        path = value.paths[0]
        plain = len(value.paths) == 1 and path.source != INPUT and not path.ops and path.scale == 1
        return self.stages[path.source] if plain and not value.bias.any() else None

    def require_flat(self, node, value: Value, n_in: int):
        if len(value.shape) != 1 or value.size != n_in:
            unsupported(node, f"expected a flat input of {n_in} features, got shape {value.shape}")
