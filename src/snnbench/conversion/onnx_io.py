"""Read a feed-forward ONNX classifier into populations and the linear paths between them.

A :class:`ConvertedModel` is a DAG of *stages*. A stage is one population: a ReLU layer (a
spiking ensemble in the Nengo network) or, last, the logits. Its input is the sum of linear
*paths* plus one constant bias: a path takes a source (the model input or an earlier stage)
through a chain of linear ops, and the bias is every bias and constant of the graph pushed
through to this stage. A plain layer chain has one path per stage, from the stage before it; a
residual Add gives a stage several paths (an identity skip is a path without ops); a Concat puts
its inputs side by side along the channels (``place`` ops). Ops work on flat C-major feature
vectors: ``dense``, ``conv``, ``avgpool``, ``select`` (one element of every pooling window) and
``place``; reshapes are no-ops. When a linear op follows a sum of paths, every path gets the
same op object, so builders can sum the paths first and apply the op once.

MaxPool has two routes, chosen by ``maxpool=``:

* ``"exact"``: max(a, b) = b + relu(a - b), so the max over a pooling window is a tree of
  pairwise maxes, each adding a hidden population holding relu(a - b) (stage name
  ``<node>/max<k>``). The rate-mode network stays exact; in a spiking network every level of
  the tree is an extra spiking layer between the pool's input and its consumers (more neurons,
  more latency).
* ``"average"``: average pooling instead; approximate, listed in ``ConvertedModel.approximations``.

Supported ops: Gemm (transB, alpha, beta), MatMul, Add (bias, constant or a sum of two tensors),
Relu, Flatten, Reshape, Conv, AveragePool, GlobalAveragePool, MaxPool, Concat (channels),
BatchNormalization (folded into the Gemm / MatMul / Conv before it), Identity, Dropout, Constant.
Weights come from the initializers (or Constant nodes) through ``onnx.numpy_helper``. Anything
else stops with a one-line :class:`SnnbenchError` naming the op and node.
"""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path as FilePath

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from snnbench.errors import SnnbenchError

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.npz"
SPEC_FORMAT = "snnbench-layers/2"   # /1: a chain of stages, each a list of ops with their biases
SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Relu", "Flatten", "Reshape", "Conv", "AveragePool",
                 "GlobalAveragePool", "MaxPool", "Concat", "BatchNormalization", "Identity", "Dropout",
                 "Constant")
MAXPOOL_ROUTES = ("exact", "average")
INPUT = -1  # the source index of the model input


@dataclass(eq=False)  # compared by identity: a shared op is one op
class LinearOp:
    """One linear op on flat (C-major) feature vectors."""
    kind: str                       # "dense" | "conv" | "avgpool" | "select" | "place"
    in_shape: tuple                 # (n,) for dense, (C, H, W) otherwise
    out_shape: tuple
    weight: np.ndarray | None = None  # dense (out, in); conv (out_c, in_c, kh, kw)
    bias: np.ndarray | None = None    # the graph's bias of this op (dense, conv); also part of Stage.bias
    kernel: tuple = ()              # conv / pooling window
    strides: tuple = (1, 1)
    padding: str = "valid"          # "valid" | "same" (stride 1, odd kernel)
    offset: tuple = ()              # select: (row, col) within the window; place: (first channel,)

    @property
    def size_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def size_out(self) -> int:
        return int(np.prod(self.out_shape))

    def indices(self) -> np.ndarray:
        """select: for each output, the flat index of the input element it copies."""
        (dr, dc), (sr, sc) = self.offset, self.strides
        _, rows, cols = self.out_shape
        grid = np.arange(self.size_in).reshape(self.in_shape)
        return grid[:, dr::sr, dc::sc][:, :rows, :cols].reshape(-1)

    @property
    def place_start(self) -> int:
        """place: flat index where the input starts in the output."""
        return int(self.offset[0] * np.prod(self.out_shape[1:]))

    def apply(self, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        """Apply to a batch of flat vectors ``(n, size_in)`` (float64 tensors)."""
        n = x.shape[0]
        if self.kind in ("dense", "conv"):
            w = torch.as_tensor(self.weight, dtype=x.dtype)
            b = torch.as_tensor(self.bias, dtype=x.dtype) if with_bias and self.bias is not None else None
            if self.kind == "dense":
                return F.linear(x, w, b)
            return F.conv2d(x.reshape(n, *self.in_shape), w, b, stride=self.strides,
                            padding=self.padding).reshape(n, -1)
        if self.kind == "avgpool":
            return F.avg_pool2d(x.reshape(n, *self.in_shape), self.kernel, self.strides).reshape(n, -1)
        if self.kind == "select":
            return x[:, torch.as_tensor(self.indices())]
        out = x.new_zeros(n, self.size_out)  # place
        out[:, self.place_start: self.place_start + self.size_in] = x
        return out

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (dense and conv only, as NeuroBench counts)."""
        if self.kind == "dense":
            return int(self.weight.size)
        if self.kind == "conv":
            return int(self.size_out * np.prod(self.weight.shape[1:]))
        return 0


@dataclass
class Path:
    """``scale * ops(source)``, the ops applied in order without their biases."""
    source: int                     # INPUT or the index of an earlier stage
    ops: list = field(default_factory=list)
    scale: float = 1.0              # -1 for the subtracted side of a max-pool population


def sum_paths(paths: list, value, apply=lambda op, x: op.apply(x, with_bias=False)):
    """``sum(path.scale * ops(value(path.source)))``, each op shared by several paths applied
    once, to the sum of what feeds it (``apply(op, x)`` applies one op)."""
    total, groups = 0.0, {}
    for path in paths:
        if path.ops:
            shorter = Path(path.source, path.ops[:-1], path.scale)
            groups.setdefault(id(path.ops[-1]), (path.ops[-1], []))[1].append(shorter)
        else:
            total = total + path.scale * value(path.source)
    for op, inner in groups.values():
        total = total + apply(op, sum_paths(inner, value, apply))
    return total


@dataclass(eq=False)
class Stage:
    """One population: ReLU of (sum of its paths + bias), or, for the last stage, the logits."""
    paths: list
    bias: np.ndarray                # (size_out,) float64
    activation: bool
    shape: tuple                    # (C, H, W) or (n,)
    name: str = ""                  # the ONNX node (Relu, MaxPool/max<k>, or the graph output)
    index: int = -1                 # position in ConvertedModel.stages (set by the model)

    @property
    def size_out(self) -> int:
        return int(np.prod(self.shape))

    @property
    def sources(self) -> list:
        return sorted({p.source for p in self.paths})

    def pre_activation(self, outputs: dict) -> torch.Tensor:
        """The stage's input current from ``outputs`` (source index -> (n, size) tensor)."""
        h = sum_paths(self.paths, outputs.__getitem__)
        return h + torch.as_tensor(self.bias, dtype=h.dtype)

    # ---- a stage of a plain chain (one path, from the stage before it), read as a layer
    def _chain_path(self) -> Path:
        if len(self.paths) != 1 or self.paths[0].source != self.index - 1 or self.paths[0].scale != 1:
            raise SnnbenchError(f"stage {self.name!r} is not a plain layer of a chain (sources "
                                f"{self.sources}); use ConvertedModel.activations / fan_out for graphs")
        return self.paths[0]

    @property
    def ops(self) -> list:
        return self._chain_path().ops

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation of a chain stage from the previous stage's output ``x``."""
        return self.pre_activation({self._chain_path().source: x})


@dataclass
class ConvertedModel:
    input_shape: tuple
    stages: list = field(default_factory=list)   # hidden populations in order, then the logits
    source: str = ""
    approximations: list = field(default_factory=list)  # what differs from the ONNX graph

    def __post_init__(self):
        for i, stage in enumerate(self.stages):
            stage.index = i
            if stage.activation != (i < len(self.stages) - 1) or any(s >= i for s in stage.sources):
                raise SnnbenchError(f"stage {i} ({stage.name!r}) is out of order: hidden populations come "
                                    "first, each fed by earlier ones, then the logits")

    @property
    def hidden(self) -> list:
        return self.stages[:-1]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return self.stages[-1].size_out

    @property
    def is_chain(self) -> bool:
        """One path per stage, from the stage before it (no skips, concatenations or max pools)."""
        return all(len(s.paths) == 1 and s.paths[0].source == s.index - 1 and s.paths[0].scale == 1
                   for s in self.stages)

    def activations(self, x: np.ndarray) -> list:
        """Every stage's output for inputs ``x`` (n, features): the hidden populations' ReLU
        activations, then the logits (float64 arrays), as the DNN computes them."""
        outputs = {INPUT: torch.as_tensor(np.asarray(x, np.float64).reshape(len(x), -1))}
        for stage in self.stages:
            h = stage.pre_activation(outputs)
            outputs[stage.index] = torch.relu(h) if stage.activation else h
        return [outputs[s.index].numpy() for s in self.stages]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The DNN these layers describe (float64), e.g. to check an extraction against ORT."""
        return self.activations(x)[-1]

    def linear_ops(self) -> list:
        """Every distinct op, in order of first use."""
        seen = {}
        for stage in self.stages:
            for path in stage.paths:
                for op in path.ops:
                    seen.setdefault(id(op), op)
        return list(seen.values())

    def macs(self) -> int:
        return sum(op.macs() for op in self.linear_ops())

    def fan_out(self, source: int) -> np.ndarray:
        """For each neuron of ``source`` (a hidden stage's index, or INPUT): how many neurons of
        the later stages it reaches through nonzero weights, each consumer's paths from it merged
        into one synapse matrix (a spike costs ``fan_out`` accumulates, as NeuroBench counts)."""
        size = self.n_inputs if source == INPUT else self.stages[source].size_out
        total = np.zeros(size)
        for stage in self.stages:
            if source in stage.sources:
                total += fan_out(stage, source=source)
        return total


# --------------------------------------------------------------------------- connectivity

def _indicator(op: LinearOp) -> LinearOp:
    """The same op with every nonzero weight set to 1 and no bias (which synapses exist)."""
    weight = None if op.weight is None else (op.weight != 0).astype(np.float32)
    return replace(op, weight=weight, bias=None)


def fan_out(stage: Stage, chunk: int = 512, source: int | None = None) -> np.ndarray:
    """For each neuron of ``source`` (default: the stage's only source): how many neurons of
    ``stage`` it reaches through nonzero weights, all its paths into the stage merged."""
    if source is None:
        if len(stage.sources) != 1:
            raise SnnbenchError(f"stage {stage.name!r} has sources {stage.sources}; name one")
        source = stage.sources[0]
    cache = stage.__dict__.setdefault("_fan_out", {})
    if source in cache:
        return cache[source]
    paths = [replace(p, scale=1.0) for p in stage.paths if p.source == source]
    indicators = {}

    def apply(op, x):
        if id(op) not in indicators:
            indicators[id(op)] = _indicator(op)
        return indicators[id(op)].apply(x, with_bias=False)

    size = next((p.ops[0].size_in for p in paths if p.ops), stage.size_out)  # identity paths: same size
    counts = []
    for a in range(0, size, chunk):
        b = min(a + chunk, size)
        h = torch.zeros(b - a, size)
        h[torch.arange(b - a), torch.arange(a, b)] = 1.0
        counts.append((sum_paths(paths, lambda _: h, apply) > 0).sum(dim=1).numpy())
    cache[source] = np.concatenate(counts).astype(np.float64)
    return cache[source]


# --------------------------------------------------------------------------- reading the graph

def _node_name(node) -> str:
    return node.name or (node.output[0] if node.output else "?")


def _fail(node, why: str = ""):
    detail = f": {why}" if why else ""
    raise SnnbenchError(f"unsupported ONNX op {node.op_type!r} at node {_node_name(node)!r}{detail}; "
                        f"supported ops: {', '.join(SUPPORTED_OPS)}")


def _load(path) -> onnx.ModelProto:
    path = FilePath(path)
    if not path.is_file():
        raise SnnbenchError(f"ONNX model {path} not found; pass the path of a .onnx file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several types for malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnnbenchError(f"{path} is not a valid ONNX model ({first[:200]}); export it again with "
                            "torch.onnx.export") from None
    return model


def _as_array(tensor) -> np.ndarray:
    value = numpy_helper.to_array(tensor)
    return value.astype(np.float32) if value.dtype.kind == "f" else value


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@dataclass
class _Value:
    """A data tensor of the graph: sum of ``paths`` + ``bias``, per sample of shape ``shape``."""
    paths: list
    bias: np.ndarray  # flat, float64
    shape: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def common_last_op(self) -> LinearOp | None:
        """The dense / conv op that every path ends with, if there is one."""
        last = {id(p.ops[-1]): p.ops[-1] for p in self.paths if p.ops}
        if len(last) != 1 or any(not p.ops for p in self.paths):
            return None
        (op,) = last.values()
        return op if op.kind in ("dense", "conv") else None

    def with_last_op(self, op: LinearOp) -> "_Value":
        """The same paths with their (common) last op replaced by ``op``."""
        return _Value([Path(p.source, p.ops[:-1] + [op], p.scale) for p in self.paths], self.bias, self.shape)


class _GraphReader:
    """The walk over the graph: each data tensor as a _Value, the constants, the stages so far."""

    def __init__(self, model: onnx.ModelProto, maxpool: str):
        graph = model.graph
        self.consts = {t.name: _as_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise SnnbenchError(f"the ONNX graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
                                "only single-input single-output classifiers can be converted")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
        if not dims or any(d <= 0 for d in dims):
            raise SnnbenchError(f"input {inputs[0].name!r} needs fixed feature dimensions (N, features) or "
                                f"(N, C, H, W), got {dims} after the batch axis")
        self.input_shape = tuple(dims)
        size = int(np.prod(dims))
        self.values = {inputs[0].name: _Value([Path(INPUT)], np.zeros(size), self.input_shape)}
        self.output = graph.output[0].name
        self.stages = []
        self.approximations = []
        self.maxpool = maxpool

    def value(self, node, index: int = 0) -> _Value:
        name = node.input[index]
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            _fail(node, f"input {name!r} must be a data tensor, not a constant")
        _fail(node, f"input {name!r} is not the output of a supported node")

    def const(self, node, name) -> np.ndarray:
        if name not in self.consts:
            _fail(node, f"{name!r} must be a constant (initializer)")
        return self.consts[name]

    def set(self, node, value: _Value):
        self.values[node.output[0]] = value

    def linear(self, value: _Value, op: LinearOp) -> _Value:
        """``op`` applied to ``value`` (its bias included)."""
        bias = op.apply(torch.as_tensor(value.bias)[None], with_bias=True)[0].numpy()
        return _Value([Path(p.source, p.ops + [op], p.scale) for p in value.paths], bias, op.out_shape)

    def population(self, value: _Value, name: str) -> _Value:
        """A hidden stage holding relu(value); returns its output as a _Value."""
        self.stages.append(Stage(value.paths, value.bias.astype(np.float64), True, value.shape, name))
        return _Value([Path(len(self.stages) - 1)], np.zeros(value.size), value.shape)

    def require_flat(self, node, value: _Value, n_in: int):
        if len(value.shape) != 1 or value.size != n_in:
            _fail(node, f"expected a flat input of {n_in} features, got shape {value.shape}")


def _gemm(r: _GraphReader, node):
    value = r.value(node)
    a = _attrs(node)
    if a.get("transA", 0):
        _fail(node, "transA=1 is not supported")
    w = r.const(node, node.input[1])
    w = w if a.get("transB", 0) else w.T
    w = a.get("alpha", 1.0) * w
    r.require_flat(node, value, w.shape[1])
    bias = np.zeros(w.shape[0], np.float32)
    if len(node.input) > 2 and node.input[2]:
        bias = bias + a.get("beta", 1.0) * np.broadcast_to(r.const(node, node.input[2]), bias.shape)
    op = LinearOp("dense", (w.shape[1],), (w.shape[0],), w.astype(np.float32), bias.astype(np.float32))
    r.set(node, r.linear(value, op))


def _matmul(r: _GraphReader, node):
    value = r.value(node)
    w = r.const(node, node.input[1])
    if w.ndim != 2:
        _fail(node, f"expected a 2-D weight, got shape {w.shape}")
    r.require_flat(node, value, w.shape[0])
    op = LinearOp("dense", (w.shape[0],), (w.shape[1],), np.ascontiguousarray(w.T), np.zeros(w.shape[1], np.float32))
    r.set(node, r.linear(value, op))


def _broadcast(node, const: np.ndarray, shape: tuple) -> np.ndarray:
    """A constant operand (ONNX broadcasting, batch axis first) as a flat per-sample vector."""
    c = np.asarray(const, np.float64)
    if c.ndim == len(shape) + 1 and c.shape[0] == 1:
        c = c[0]
    try:
        return np.broadcast_to(c, shape).reshape(-1)
    except ValueError:
        _fail(node, f"constant of shape {const.shape} does not broadcast to the tensor's shape {shape}")


def _add(r: _GraphReader, node):
    names = list(node.input)
    if all(n in r.consts for n in names):
        r.consts[node.output[0]] = r.consts[names[0]] + r.consts[names[1]]
        return
    if all(n in r.values for n in names):  # a sum of two tensors (residual connection)
        a, b = r.value(node, 0), r.value(node, 1)
        if a.shape != b.shape:
            _fail(node, f"adding shapes {a.shape} and {b.shape} (broadcasting) is not supported")
        r.set(node, _Value(a.paths + b.paths, a.bias + b.bias, a.shape))
        return
    index = 0 if names[0] in r.values else 1
    value = r.value(node, index)
    constant = _broadcast(node, r.const(node, names[1 - index]), value.shape)
    last = value.common_last_op()
    if last is not None:
        per_output = constant.reshape(last.out_shape[0], -1)
        if np.all(per_output == per_output[:, :1]):  # the bias of a MatMul / Conv: recorded with the op too
            value = value.with_last_op(replace(last, bias=(last.bias + per_output[:, 0]).astype(np.float32)))
    r.set(node, _Value(value.paths, value.bias + constant, value.shape))


def _conv(r: _GraphReader, node):
    value = r.value(node)
    a = _attrs(node)
    if len(value.shape) != 3:
        _fail(node, f"Conv needs a (C, H, W) input, got shape {value.shape}")
    w = r.const(node, node.input[1])
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        _fail(node, "grouped or dilated convolutions are not supported")
    if w.ndim != 4 or w.shape[1] != value.shape[0]:
        _fail(node, f"expected a 2-D convolution kernel with {value.shape[0]} input channels, got {w.shape}")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(a.get("strides", [1, 1]))
    padding = _padding(node, a, kernel, strides)
    bias = r.const(node, node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
    out_hw = [_out_len(value.shape[i + 1], kernel[i], strides[i], padding) for i in range(2)]
    op = LinearOp("conv", value.shape, (w.shape[0], *out_hw), w.astype(np.float32),
                  np.asarray(bias, np.float32), kernel, strides, padding)
    r.set(node, r.linear(value, op))


def _padding(node, a, kernel, strides) -> str:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        _fail(node, "auto_pad SAME_* is not supported; export with explicit padding")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if all(p == 0 for p in pads):
        return "valid"
    same = [(k - 1) // 2 for k in kernel] * 2
    if strides == (1, 1) and all(k % 2 for k in kernel) and pads == same:
        return "same"
    _fail(node, f"padding {pads} is not supported (use none, or 'same' with stride 1 and an odd kernel)")


def _out_len(n, k, s, padding) -> int:
    return n if padding == "same" else (n - k) // s + 1


def _window(node, value: _Value) -> tuple:
    """(kernel, strides, output shape) of a pooling node on ``value``."""
    if len(value.shape) != 3:
        _fail(node, f"pooling needs a (C, H, W) input, got shape {value.shape}")
    c, h, w = value.shape
    if node.op_type == "GlobalAveragePool":
        kernel, strides = (h, w), (1, 1)
    else:
        a = _attrs(node)
        if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            _fail(node, "padded, dilated or ceil-mode pooling is not supported")
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", [1, 1]))
    return kernel, strides, (c, (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1)


def _avgpool(r: _GraphReader, node):
    value = r.value(node)
    kernel, strides, out = _window(node, value)
    r.set(node, r.linear(value, LinearOp("avgpool", value.shape, out, kernel=kernel, strides=strides)))


def _maxpool(r: _GraphReader, node):
    """MaxPool, exactly (a tree of pairwise maxes, max(a, b) = b + relu(a - b)) or as average pooling."""
    value = r.value(node)
    if len(node.output) > 1 and node.output[1]:
        _fail(node, "the indices output of MaxPool is not supported")
    kernel, strides, out = _window(node, value)
    name = _node_name(node)
    if r.maxpool == "average":
        r.approximations.append(f"MaxPool {name!r} -> average pooling")
        r.set(node, r.linear(value, LinearOp("avgpool", value.shape, out, kernel=kernel, strides=strides)))
        return
    level = [r.linear(value, LinearOp("select", value.shape, out, kernel=kernel, strides=strides, offset=(i, j)))
             for i in range(kernel[0]) for j in range(kernel[1])]
    count = 0
    while len(level) > 1:
        pairs, level = level, []
        for a, b in zip(pairs[0::2], pairs[1::2]):
            count += 1
            difference = _Value(a.paths + [replace(p, scale=-p.scale) for p in b.paths], a.bias - b.bias, out)
            larger = r.population(difference, f"{name}/max{count}")  # relu(a - b)
            level.append(_Value(b.paths + larger.paths, b.bias, out))
        if len(pairs) % 2:
            level.append(pairs[-1])
    r.set(node, level[0])


def _concat(r: _GraphReader, node):
    names = list(node.input)
    if all(n in r.consts for n in names):
        r.consts[node.output[0]] = np.concatenate([r.consts[n] for n in names], axis=_attrs(node)["axis"])
        return
    parts = [r.value(node, i) for i in range(len(names))]
    shape = parts[0].shape
    axis = _attrs(node).get("axis", 1)
    if axis not in (1, -len(shape)) or any(p.shape[1:] != shape[1:] for p in parts):
        _fail(node, f"only concatenation along the channel axis (1) is supported; inputs have shapes "
                    f"{[p.shape for p in parts]}, axis {axis}")
    out = (sum(p.shape[0] for p in parts), *shape[1:])
    paths, first = [], 0
    for part in parts:
        place = LinearOp("place", part.shape, out, offset=(first,))
        paths += [Path(p.source, p.ops + [place], p.scale) for p in part.paths]
        first += part.shape[0]
    r.set(node, _Value(paths, np.concatenate([p.bias for p in parts]), out))


def _batchnorm(r: _GraphReader, node):
    value = r.value(node)
    last = value.common_last_op()
    if last is None:
        _fail(node, "BatchNormalization must follow a Gemm, MatMul or Conv so that it can be folded in")
    gamma, beta, mean, var = (r.const(node, name).astype(np.float64) for name in node.input[1:5])
    scale = gamma / np.sqrt(var + _attrs(node).get("epsilon", 1e-5))
    folded = replace(last, weight=(last.weight * scale.reshape(-1, *[1] * (last.weight.ndim - 1))).astype(np.float32),
                     bias=((last.bias - mean) * scale + beta).astype(np.float32))
    per_feature = np.repeat(scale, value.size // len(scale))  # channels are the outer axis
    shift = np.repeat(beta - mean * scale, value.size // len(scale))
    r.set(node, _Value(value.with_last_op(folded).paths, value.bias * per_feature + shift, value.shape))


def _reshape(r: _GraphReader, node):
    value = r.value(node)
    if node.op_type == "Flatten":
        if _attrs(node).get("axis", 1) != 1:
            _fail(node, "only Flatten with axis=1 is supported")
        shape = (value.size,)
    else:
        target = [int(v) for v in r.const(node, node.input[1]).reshape(-1)]
        if len(target) < 2 or target[0] not in (-1, 0) and target[0] != 1:
            _fail(node, f"Reshape to {target} must keep the batch axis first")
        shape = [s for s in target[1:]]
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape[shape.index(-1)] = value.size // max(known, 1)
        shape = tuple(shape)
        if int(np.prod(shape)) != value.size:
            _fail(node, f"Reshape to {target} does not keep the {value.size} features")
    r.set(node, _Value(value.paths, value.bias, shape))


def _relu(r: _GraphReader, node):
    value = r.value(node)
    path = value.paths[0]
    if len(value.paths) == 1 and path.source != INPUT and not path.ops and path.scale == 1 and not value.bias.any():
        r.set(node, value)  # already a ReLU population
    else:
        r.set(node, r.population(value, _node_name(node)))


def _passthrough(r: _GraphReader, node):
    r.set(node, r.value(node))


def _constant(r: _GraphReader, node):
    value = _attrs(node).get("value")
    if value is None:
        _fail(node, "only Constant nodes with a tensor 'value' are supported")
    r.consts[node.output[0]] = _as_array(value)


HANDLERS = {"Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Relu": _relu, "Flatten": _reshape,
            "Reshape": _reshape, "Conv": _conv, "AveragePool": _avgpool, "GlobalAveragePool": _avgpool,
            "MaxPool": _maxpool, "Concat": _concat, "BatchNormalization": _batchnorm,
            "Identity": _passthrough, "Dropout": _passthrough, "Constant": _constant}


def extract(path, maxpool: str = "exact") -> ConvertedModel:
    """Read an ONNX file into a :class:`ConvertedModel` (one-line SnnbenchError if it cannot).

    ``maxpool``: ``"exact"`` (extra ReLU populations, rate-mode exact) or ``"average"`` (average
    pooling instead, approximate: listed in ``approximations``); see the module docstring.
    """
    if maxpool not in MAXPOOL_ROUTES:
        raise SnnbenchError(f"unknown MaxPool route {maxpool!r}; use one of {', '.join(MAXPOOL_ROUTES)}")
    model = _load(path)
    reader = _GraphReader(model, maxpool)
    for node in model.graph.node:
        if node.op_type not in HANDLERS:
            _fail(node)
        HANDLERS[node.op_type](reader, node)
    output = reader.values.get(reader.output)
    if output is None or not output.paths:
        raise SnnbenchError(f"{path}: the graph output {reader.output!r} does not depend on the input "
                            "through supported nodes")
    logits = Stage(output.paths, output.bias, False, output.shape, reader.output)
    return ConvertedModel(reader.input_shape, reader.stages + [logits], str(path), reader.approximations)


# --------------------------------------------------------------------------- NPZ + JSON files

_OP_FIELDS = ("kernel", "strides", "offset")


def save(converted: ConvertedModel, folder) -> FilePath:
    """Write ``weights.npz`` and ``spec.json`` into ``folder`` (ops shared by paths stored once)."""
    folder = FilePath(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, ops, stages = {}, [], []
    number = {id(op): i for i, op in enumerate(converted.linear_ops())}
    for i, op in enumerate(converted.linear_ops()):
        entry = {"kind": op.kind, "in_shape": list(op.in_shape), "out_shape": list(op.out_shape),
                 "padding": op.padding, **{k: list(getattr(op, k)) for k in _OP_FIELDS}}
        for name in ("weight", "bias"):
            if getattr(op, name) is not None:
                entry[name] = f"op{i}.{name}"
                arrays[entry[name]] = getattr(op, name)
        ops.append(entry)
    for i, stage in enumerate(converted.stages):
        arrays[f"stage{i}.bias"] = stage.bias
        stages.append({"name": stage.name, "activation": "relu" if stage.activation else None,
                       "shape": list(stage.shape), "bias": f"stage{i}.bias",
                       "paths": [{"source": p.source, "ops": [number[id(op)] for op in p.ops], "scale": p.scale}
                                 for p in stage.paths]})
    spec = {"format": SPEC_FORMAT, "input_shape": list(converted.input_shape), "source": converted.source,
            "approximations": list(converted.approximations), "ops": ops, "stages": stages}
    np.savez(folder / WEIGHTS_FILE, **arrays)
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1))
    return folder


def _op_from_entry(entry: dict, arrays) -> LinearOp:
    return LinearOp(entry["kind"], tuple(entry["in_shape"]), tuple(entry["out_shape"]),
                    arrays[entry["weight"]] if "weight" in entry else None,
                    arrays[entry["bias"]] if "bias" in entry else None,
                    padding=entry["padding"], **{k: tuple(entry.get(k, ())) for k in _OP_FIELDS if k in entry})


def _chain_stage(index: int, ops: list, activation: bool) -> Stage:
    """A stage of a format-1 chain: its ops with their biases, from the stage before it."""
    h = torch.zeros(1, ops[0].size_in, dtype=torch.float64)
    for op in ops:
        h = op.apply(h)
    return Stage([Path(index - 1, ops)], h.numpy()[0], activation, ops[-1].out_shape)


def load(folder) -> ConvertedModel:
    folder = FilePath(folder)
    if not (folder / SPEC_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise SnnbenchError(f"{folder} has no {SPEC_FILE} + {WEIGHTS_FILE}; write them with snnbench.conversion.onnx_io.save")
    spec = json.loads((folder / SPEC_FILE).read_text())
    with np.load(folder / WEIGHTS_FILE) as arrays:
        if spec.get("format") == "snnbench-layers/1":
            stages = [_chain_stage(i, [_op_from_entry(o, arrays) for o in s["ops"]], s["activation"] == "relu")
                      for i, s in enumerate(spec["stages"])]
        elif spec.get("format") == SPEC_FORMAT:
            ops = [_op_from_entry(o, arrays) for o in spec["ops"]]
            stages = [Stage([Path(p["source"], [ops[k] for k in p["ops"]], p["scale"]) for p in s["paths"]],
                            arrays[s["bias"]], s["activation"] == "relu", tuple(s["shape"]), s["name"])
                      for s in spec["stages"]]
        else:
            raise SnnbenchError(f"{folder / SPEC_FILE} has format {spec.get('format')!r}; this version reads "
                                f"snnbench-layers/1 and {SPEC_FORMAT} (convert the ONNX model again)")
    return ConvertedModel(tuple(spec["input_shape"]), stages, spec.get("source", ""),
                          spec.get("approximations", []))


def load_any(source, maxpool: str = "exact") -> ConvertedModel:
    """A ConvertedModel from itself, an .onnx file, or a folder with model.onnx or weights + spec
    (``maxpool``: the MaxPool route when an ONNX file is read)."""
    if isinstance(source, ConvertedModel):
        return source
    path = FilePath(source)
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            return load(path)
        if (path / "model.onnx").is_file():
            return extract(path / "model.onnx", maxpool)
        raise SnnbenchError(f"{path} holds neither model.onnx nor {SPEC_FILE} + {WEIGHTS_FILE}")
    return extract(path, maxpool)
