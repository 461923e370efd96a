"""Read a feed-forward ONNX classifier into a plain list of layers (NumPy weights + a JSON spec).

:func:`extract` walks the graph in order and turns each node into one of four linear ops
(``dense``, ``conv``, ``avgpool``; reshapes are no-ops on the flat C-major feature vector) or a
``relu`` marker. Weights come from the initializers (or Constant nodes) through
``onnx.numpy_helper``; BatchNormalization is folded into the dense / conv op before it.
The result is grouped into *stages*: the linear ops up to a ReLU (one spiking ensemble each in
the Nengo network), and a last stage of linear ops that gives the logits.

Supported ops: Gemm (transB, alpha, beta), MatMul + Add, Relu, Flatten, Reshape, Conv,
AveragePool, GlobalAveragePool, BatchNormalization, Identity, Dropout. Anything else stops with
a one-line :class:`SnnbenchError` naming the op and node.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from snnbench.errors import SnnbenchError

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.npz"
SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Relu", "Flatten", "Reshape", "Conv", "AveragePool",
                 "GlobalAveragePool", "BatchNormalization", "Identity", "Dropout")


@dataclass
class LinearOp:
    """One linear op on a flat (C-major) feature vector: dense, conv or avgpool."""
    kind: str                       # "dense" | "conv" | "avgpool"
    in_shape: tuple                 # (n,) for dense, (C, H, W) otherwise
    out_shape: tuple
    weight: np.ndarray | None = None  # dense (out, in); conv (out_c, in_c, kh, kw)
    bias: np.ndarray | None = None    # (out,) or (out_c,)
    kernel: tuple = ()
    strides: tuple = (1, 1)
    padding: str = "valid"          # "valid" | "same" (stride 1, odd kernel)

    @property
    def size_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def size_out(self) -> int:
        return int(np.prod(self.out_shape))

    def apply(self, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        """Apply to a batch of flat vectors ``(n, size_in)`` (float64 tensors)."""
        n = x.shape[0]
        if self.kind == "dense":
            w = torch.as_tensor(self.weight, dtype=x.dtype)
            b = torch.as_tensor(self.bias, dtype=x.dtype) if with_bias and self.bias is not None else None
            return F.linear(x, w, b)
        image = x.reshape(n, *self.in_shape)
        if self.kind == "conv":
            w = torch.as_tensor(self.weight, dtype=x.dtype)
            b = torch.as_tensor(self.bias, dtype=x.dtype) if with_bias and self.bias is not None else None
            out = F.conv2d(image, w, b, stride=self.strides, padding=self.padding)
        else:
            out = F.avg_pool2d(image, self.kernel, self.strides)
        return out.reshape(n, -1)

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (dense and conv only, as NeuroBench counts)."""
        if self.kind == "dense":
            return int(self.weight.size)
        if self.kind == "conv":
            return int(self.size_out * np.prod(self.weight.shape[1:]))
        return 0


@dataclass
class Stage:
    """Linear ops then, unless it is the output stage, a ReLU (one Nengo ensemble)."""
    ops: list
    activation: bool

    @property
    def size_in(self) -> int:
        return self.ops[0].size_in

    @property
    def size_out(self) -> int:
        return self.ops[-1].size_out

    def apply(self, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        for op in self.ops:
            x = op.apply(x, with_bias)
        return x

    def bias(self) -> np.ndarray:
        """Per-output bias of the whole stage (the ops' biases pushed through the later ops)."""
        zero = torch.zeros(1, self.size_in, dtype=torch.float64)
        return self.apply(zero).numpy()[0].astype(np.float32)


@dataclass
class ConvertedModel:
    input_shape: tuple
    stages: list = field(default_factory=list)
    source: str = ""

    @property
    def hidden(self) -> list:
        return [s for s in self.stages if s.activation]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return self.stages[-1].size_out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The DNN these layers describe (float64), e.g. to check an extraction against ORT."""
        h = torch.as_tensor(np.asarray(x, np.float64).reshape(len(x), -1))
        for stage in self.stages:
            h = stage.apply(h)
            if stage.activation:
                h = torch.relu(h)
        return h.numpy()

    def macs(self) -> int:
        return sum(op.macs() for s in self.stages for op in s.ops)


# --------------------------------------------------------------------------- reading the graph

def _fail(node, why: str = ""):
    name = node.name or (node.output[0] if node.output else "?")
    detail = f": {why}" if why else ""
    raise SnnbenchError(f"unsupported ONNX op {node.op_type!r} at node {name!r}{detail}; supported ops: "
                        f"{', '.join(SUPPORTED_OPS)}")


def _load(path) -> onnx.ModelProto:
    path = Path(path)
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


class _GraphReader:
    """State of the walk: the one running data tensor, its shape, constants and the ops so far."""

    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.consts = {t.name: _as_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise SnnbenchError(f"the ONNX graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
                                "only single-input single-output classifiers can be converted")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
        if not dims or any(d <= 0 for d in dims):
            raise SnnbenchError(f"input {inputs[0].name!r} needs fixed feature dimensions, got {dims}")
        self.input_shape = tuple(dims)
        self.data = inputs[0].name
        self.output = graph.output[0].name
        self.shape = tuple(dims)
        self.items = []             # LinearOp or "relu"
        self.pending_matmul = None  # a MatMul waiting for its Add (bias)

    def data_input(self, node, index=0) -> None:
        if node.input[index] != self.data:
            _fail(node, "the graph must be a single chain (input not the previous layer's output)")

    def const(self, node, name) -> np.ndarray:
        if name not in self.consts:
            _fail(node, f"{name!r} must be a constant (initializer)")
        return self.consts[name]

    def flat_size(self) -> int:
        return int(np.prod(self.shape))

    def add(self, node, op: LinearOp):
        self.items.append(op)
        self.shape = op.out_shape
        self.data = node.output[0]


def _gemm(r: _GraphReader, node):
    r.data_input(node)
    a = _attrs(node)
    if a.get("transA", 0):
        _fail(node, "transA=1 is not supported")
    w = r.const(node, node.input[1])
    w = w if a.get("transB", 0) else w.T
    w = a.get("alpha", 1.0) * w
    if w.shape[1] != r.flat_size():
        _fail(node, f"weight has {w.shape[1]} inputs but the layer receives {r.flat_size()}")
    bias = np.zeros(w.shape[0], np.float32)
    if len(node.input) > 2 and node.input[2]:
        bias = bias + a.get("beta", 1.0) * np.broadcast_to(r.const(node, node.input[2]), bias.shape)
    r.add(node, LinearOp("dense", (w.shape[1],), (w.shape[0],), w.astype(np.float32), bias.astype(np.float32)))


def _matmul(r: _GraphReader, node):
    r.data_input(node)
    w = r.const(node, node.input[1])
    if w.ndim != 2 or w.shape[0] != r.flat_size():
        _fail(node, f"expected a 2-D weight with {r.flat_size()} rows, got shape {w.shape}")
    r.add(node, LinearOp("dense", (w.shape[0],), (w.shape[1],), np.ascontiguousarray(w.T),
                         np.zeros(w.shape[1], np.float32)))


def _add(r: _GraphReader, node):
    if r.data not in node.input:
        _fail(node, "the graph must be a single chain")
    other = node.input[1] if node.input[0] == r.data else node.input[0]
    last = r.items[-1] if r.items else None
    if not isinstance(last, LinearOp) or last.kind not in ("dense", "conv"):
        _fail(node, "Add is only supported as the bias of a MatMul, Gemm or Conv")
    bias = r.const(node, other)
    n_out = last.out_shape[0]
    try:
        bias = np.broadcast_to(bias.reshape(-1), (n_out,))
    except ValueError:
        _fail(node, f"bias of shape {bias.shape} does not match {n_out} outputs")
    last.bias = (last.bias + bias).astype(np.float32)
    r.data = node.output[0]


def _conv(r: _GraphReader, node):
    r.data_input(node)
    a = _attrs(node)
    if len(r.shape) != 3:
        _fail(node, f"Conv needs a (C, H, W) input, got shape {r.shape}")
    w = r.const(node, node.input[1])
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        _fail(node, "grouped or dilated convolutions are not supported")
    if w.ndim != 4 or w.shape[1] != r.shape[0]:
        _fail(node, f"expected a 2-D convolution kernel with {r.shape[0]} input channels, got {w.shape}")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(a.get("strides", [1, 1]))
    padding = _padding(node, a, kernel, strides)
    bias = r.const(node, node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
    out_hw = [_out_len(r.shape[i + 1], kernel[i], strides[i], padding) for i in range(2)]
    r.add(node, LinearOp("conv", r.shape, (w.shape[0], *out_hw), w.astype(np.float32),
                         np.asarray(bias, np.float32), kernel, strides, padding))


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


def _avgpool(r: _GraphReader, node):
    r.data_input(node)
    if len(r.shape) != 3:
        _fail(node, f"pooling needs a (C, H, W) input, got shape {r.shape}")
    c, h, w = r.shape
    if node.op_type == "GlobalAveragePool":
        kernel, strides = (h, w), (1, 1)
    else:
        a = _attrs(node)
        if any(a.get("pads", [0])) or a.get("ceil_mode", 0):
            _fail(node, "padded or ceil-mode pooling is not supported")
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", [1, 1]))
    out = (c, (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1)
    r.add(node, LinearOp("avgpool", r.shape, out, kernel=kernel, strides=strides))


def _batchnorm(r: _GraphReader, node):
    r.data_input(node)
    last = r.items[-1] if r.items else None
    if not isinstance(last, LinearOp) or last.kind not in ("dense", "conv") or r.data != node.input[0]:
        _fail(node, "BatchNormalization must follow a Gemm, MatMul or Conv so that it can be folded in")
    gamma, beta, mean, var = (r.const(node, name) for name in node.input[1:5])
    scale = gamma / np.sqrt(var + _attrs(node).get("epsilon", 1e-5))
    last.weight = (last.weight * scale.reshape(-1, *[1] * (last.weight.ndim - 1))).astype(np.float32)
    last.bias = ((last.bias - mean) * scale + beta).astype(np.float32)
    r.data = node.output[0]


def _reshape(r: _GraphReader, node):
    r.data_input(node)
    if node.op_type == "Flatten":
        if _attrs(node).get("axis", 1) != 1:
            _fail(node, "only Flatten with axis=1 is supported")
        shape = (r.flat_size(),)
    else:
        target = [int(v) for v in r.const(node, node.input[1]).reshape(-1)]
        if len(target) < 2 or target[0] not in (-1, 0) and target[0] != 1:
            _fail(node, f"Reshape to {target} must keep the batch axis first")
        shape = [s for s in target[1:]]
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape[shape.index(-1)] = r.flat_size() // max(known, 1)
        shape = tuple(shape)
        if int(np.prod(shape)) != r.flat_size():
            _fail(node, f"Reshape to {target} does not keep the {r.flat_size()} features")
    r.shape = shape
    r.data = node.output[0]


def _relu(r: _GraphReader, node):
    r.data_input(node)
    r.items.append("relu")
    r.data = node.output[0]


def _passthrough(r: _GraphReader, node):
    r.data_input(node)
    r.data = node.output[0]


def _constant(r: _GraphReader, node):
    value = _attrs(node).get("value")
    if value is None:
        _fail(node, "only Constant nodes with a tensor 'value' are supported")
    r.consts[node.output[0]] = _as_array(value)


HANDLERS = {"Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Relu": _relu, "Flatten": _reshape,
            "Reshape": _reshape, "Conv": _conv, "AveragePool": _avgpool, "GlobalAveragePool": _avgpool,
            "BatchNormalization": _batchnorm, "Identity": _passthrough, "Dropout": _passthrough,
            "Constant": _constant}


def _stages(items: list, node_hint: str) -> list:
    stages, ops = [], []
    for item in items:
        if item == "relu":
            if not ops:
                raise SnnbenchError(f"{node_hint}: a Relu must follow a linear layer (Gemm, MatMul or Conv)")
            stages.append(Stage(ops, activation=True))
            ops = []
        else:
            ops.append(item)
    if not ops:
        raise SnnbenchError(f"{node_hint}: the network must end with a linear layer that gives the logits")
    stages.append(Stage(ops, activation=False))
    return stages


def extract(path) -> ConvertedModel:
    """Read an ONNX file into a :class:`ConvertedModel` (one-line SnnbenchError if it cannot)."""
    model = _load(path)
    reader = _GraphReader(model)
    for node in model.graph.node:
        if node.op_type not in HANDLERS:
            _fail(node)
        HANDLERS[node.op_type](reader, node)
    if reader.data != reader.output:
        raise SnnbenchError(f"{path}: the graph output {reader.output!r} is not the end of the layer chain")
    return ConvertedModel(reader.input_shape, _stages(reader.items, str(path)), source=str(path))


# --------------------------------------------------------------------------- NPZ + JSON files

def save(converted: ConvertedModel, folder) -> Path:
    """Write ``weights.npz`` and ``spec.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, stages = {}, []
    for i, stage in enumerate(converted.stages):
        ops = []
        for j, op in enumerate(stage.ops):
            entry = {"kind": op.kind, "in_shape": list(op.in_shape), "out_shape": list(op.out_shape),
                     "kernel": list(op.kernel), "strides": list(op.strides), "padding": op.padding}
            for name in ("weight", "bias"):
                value = getattr(op, name)
                if value is not None:
                    entry[name] = f"stage{i}.op{j}.{name}"
                    arrays[entry[name]] = value
            ops.append(entry)
        stages.append({"activation": "relu" if stage.activation else None, "ops": ops})
    spec = {"format": "snnbench-layers/1", "input_shape": list(converted.input_shape),
            "source": converted.source, "stages": stages}
    np.savez(folder / WEIGHTS_FILE, **arrays)
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1))
    return folder


def load(folder) -> ConvertedModel:
    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise SnnbenchError(f"{folder} has no {SPEC_FILE} + {WEIGHTS_FILE}; write them with snnbench.onnx_io.save")
    spec = json.loads((folder / SPEC_FILE).read_text())
    with np.load(folder / WEIGHTS_FILE) as arrays:
        stages = [Stage([LinearOp(o["kind"], tuple(o["in_shape"]), tuple(o["out_shape"]),
                                  arrays[o["weight"]] if "weight" in o else None,
                                  arrays[o["bias"]] if "bias" in o else None,
                                  tuple(o["kernel"]), tuple(o["strides"]), o["padding"])
                         for o in s["ops"]], activation=s["activation"] == "relu")
                  for s in spec["stages"]]
    return ConvertedModel(tuple(spec["input_shape"]), stages, source=spec.get("source", ""))


def load_any(source) -> ConvertedModel:
    """A ConvertedModel from itself, an .onnx file, or a folder with model.onnx or weights + spec."""
    if isinstance(source, ConvertedModel):
        return source
    path = Path(source)
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            return load(path)
        if (path / "model.onnx").is_file():
            return extract(path / "model.onnx")
        raise SnnbenchError(f"{path} holds neither model.onnx nor {SPEC_FILE} + {WEIGHTS_FILE}")
    return extract(path)


# --------------------------------------------------------------------------- connectivity

def _indicator(op: LinearOp) -> LinearOp:
    """The same op with every nonzero weight set to 1 and no bias (which synapses exist)."""
    weight = None if op.weight is None else (op.weight != 0).astype(np.float32)
    return LinearOp(op.kind, op.in_shape, op.out_shape, weight, None, op.kernel, op.strides, op.padding)


def fan_out(stage: Stage, chunk: int = 512) -> np.ndarray:
    """For each input of ``stage``: how many of its outputs it reaches through nonzero weights.

    This counts the stage as if its linear ops were merged into one synapse matrix, so a spike
    costs ``fan_out`` accumulates (as NeuroBench counts synaptic operations).
    """
    cached = getattr(stage, "_fan_out", None)
    if cached is not None:
        return cached
    ops = [_indicator(op) for op in stage.ops]
    counts = []
    for a in range(0, stage.size_in, chunk):
        b = min(a + chunk, stage.size_in)
        h = torch.zeros(b - a, stage.size_in)
        h[torch.arange(b - a), torch.arange(a, b)] = 1.0
        for op in ops:
            h = op.apply(h, with_bias=False)
        counts.append((h > 0).sum(dim=1).numpy())
    stage._fan_out = np.concatenate(counts).astype(np.float64)
    return stage._fan_out
