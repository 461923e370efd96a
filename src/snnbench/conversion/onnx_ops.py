"""Reading an ONNX classifier into a ConvertedModel (:func:`extract`).

Supported ops: Gemm (transB, alpha, beta), MatMul, Add (bias, constant or a sum of two tensors),
Relu, Clip (lower bound 0: a bounded ReLU, e.g. ReLU6), Pad (zeros around H and W), Flatten, Reshape,
Conv (any zero padding, stride, dilation, groups), AveragePool, GlobalAveragePool, MaxPool, Concat
(channels), BatchNormalization (folded into the Gemm / MatMul / Conv before it), Identity, Dropout,
Constant. Anything else stops with a one-line :class:`SnnbenchError` naming the op and node.

MaxPool has two routes (``maxpool=``):

* ``"exact"``: max(a, b) = b + relu(a - b), a tree of pairwise maxes, each a hidden population
  holding relu(a - b) (stage ``<node>/max<k>``): exact in rate mode; in a spiking network every
  level of the tree is an extra spiking layer (more neurons, more latency);
* ``"average"``: average pooling instead; approximate, listed in ``ConvertedModel.approximations``.
"""

from dataclasses import replace

import numpy as np

from snnbench.conversion.graph import ConvertedModel, LinearOp, Path, Stage, conv_out_len, same_pads
from snnbench.conversion.onnx_graph import GraphReader, Value, as_array, attributes, load_model, node_name, unsupported
from snnbench.config import check_choice
from snnbench.errors import UnsupportedModelError

MAXPOOL_ROUTES = ("exact", "average")


def _given(node, index: int) -> bool:
    return len(node.input) > index and bool(node.input[index])


def _scalar(r: GraphReader, node, index: int, default):
    """The optional constant input ``index`` as a float, or ``default``."""
    return float(np.asarray(r.const(node, node.input[index])).reshape(-1)[0]) if _given(node, index) else default


def _dense(r: GraphReader, node):
    """Gemm (transB, alpha, beta) or MatMul, by a constant 2-D weight."""
    value = r.value(node)
    a = attributes(node)
    if a.get("transA", 0):
        unsupported(node, "transA=1 is not supported")
    w = r.const(node, node.input[1])
    if w.ndim != 2:
        unsupported(node, f"expected a 2-D weight, got shape {w.shape}")
    w = a.get("alpha", 1.0) * (w if a.get("transB", 0) else w.T)
    r.require_flat(node, value, w.shape[1])
    bias = np.zeros(w.shape[0], np.float32)
    if _given(node, 2):
        bias = bias + a.get("beta", 1.0) * np.broadcast_to(r.const(node, node.input[2]), bias.shape)
    op = LinearOp("dense", (w.shape[1],), (w.shape[0],), w.astype(np.float32), bias.astype(np.float32))
    r.set(node, r.linear(value, op))


def _broadcast(node, const: np.ndarray, shape: tuple) -> np.ndarray:
    """A constant operand (ONNX broadcasting, batch axis first) as a flat per-sample vector."""
    c = np.asarray(const, np.float64)
    if c.ndim == len(shape) + 1 and c.shape[0] == 1:
        c = c[0]
    try:
        return np.broadcast_to(c, shape).reshape(-1)
    except ValueError:
        unsupported(node, f"constant of shape {const.shape} does not broadcast to the tensor's shape {shape}")


def _add(r: GraphReader, node):
    names = list(node.input)
    if all(n in r.consts for n in names):
        r.consts[node.output[0]] = r.consts[names[0]] + r.consts[names[1]]
        return
    if all(n in r.values for n in names):  # a sum of two tensors (residual connection)
        a, b = r.value(node, 0), r.value(node, 1)
        if a.shape != b.shape:
            unsupported(node, f"adding shapes {a.shape} and {b.shape} (broadcasting) is not supported")
        r.set(node, Value(a.paths + b.paths, a.bias + b.bias, a.shape))
        return
    index = 0 if names[0] in r.values else 1
    value = r.value(node, index)
    constant = _broadcast(node, r.const(node, names[1 - index]), value.shape)
    last = value.common_last_op()
    if last is not None:
        per_output = constant.reshape(last.out_shape[0], -1)
        if np.all(per_output == per_output[:, :1]):  # the bias of a MatMul / Conv: recorded with the op too
            value = value.with_last_op(replace(last, bias=(last.bias + per_output[:, 0]).astype(np.float32)))
    r.set(node, Value(value.paths, value.bias + constant, value.shape))


def _conv(r: GraphReader, node):
    value = r.value(node)
    a = attributes(node)
    if len(value.shape) != 3:
        unsupported(node, f"Conv needs a (C, H, W) input, got shape {value.shape}")
    w = r.const(node, node.input[1])
    groups = int(a.get("group", 1))
    channels = value.shape[0]
    if w.ndim != 4 or channels % groups or w.shape[1] * groups != channels or w.shape[0] % groups:
        unsupported(node, f"expected a 2-D convolution kernel (out, {channels} / {groups} groups, kh, kw) for "
                    f"{channels} input channels, got {w.shape}")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(int(s) for s in a.get("strides", [1, 1]))
    dilations = tuple(int(d) for d in a.get("dilations", [1, 1]))
    dilated = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    pads = _used_pads(node, a, value.shape[1:], dilated, strides)
    bias = r.const(node, node.input[2]) if _given(node, 2) else np.zeros(w.shape[0])
    out_hw = [conv_out_len(value.shape[i + 1], dilated[i], strides[i], pads[i], pads[i + 2]) for i in range(2)]
    if min(out_hw) < 1:
        unsupported(node, f"the kernel {dilated} does not fit the padded input {value.shape}")
    op = LinearOp("conv", value.shape, (w.shape[0], *out_hw), w.astype(np.float32),
                  np.asarray(bias, np.float32), kernel, strides, pads=pads, groups=groups, dilations=dilations)
    r.set(node, r.linear(value, op))


def _used_pads(node, a, size, kernel, strides) -> tuple:
    """(top, left, bottom, right) zero padding, less the trailing rows / columns that no window
    reaches (so that e.g. PyTorch's stride-2 padding 1 on an even size is its real top-left pad)."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = list(same_pads(size, kernel, strides))  # SAME_UPPER: the odd pixel after, SAME_LOWER before
        if auto == "SAME_LOWER":
            pads = pads[2:] + pads[:2]
    elif auto in ("NOTSET", "VALID"):
        pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])] if auto == "NOTSET" else [0, 0, 0, 0]
    else:
        unsupported(node, f"unknown auto_pad {auto!r}")
    if len(pads) != 4 or min(pads) < 0:
        unsupported(node, f"pads {pads} are not four non-negative 2-D pads")
    for i in range(2):
        out = conv_out_len(size[i], kernel[i], strides[i], pads[i], pads[i + 2])
        reach = (out - 1) * strides[i] + kernel[i]  # padded rows that the windows cover
        pads[i + 2] = max(0, min(pads[i + 2], reach - size[i] - pads[i]))
    return tuple(pads)


def _window(node, value: Value) -> tuple:
    """(kernel, strides, output shape) of a pooling node on ``value``."""
    if len(value.shape) != 3:
        unsupported(node, f"pooling needs a (C, H, W) input, got shape {value.shape}")
    c, h, w = value.shape
    if node.op_type == "GlobalAveragePool":
        kernel, strides = (h, w), (1, 1)
    else:
        a = attributes(node)
        if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            unsupported(node, "padded, dilated or ceil-mode pooling is not supported")
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", [1, 1]))
    return kernel, strides, (c, (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1)


def _avgpool(r: GraphReader, node):
    value = r.value(node)
    kernel, strides, out = _window(node, value)
    r.set(node, r.linear(value, LinearOp("avgpool", value.shape, out, kernel=kernel, strides=strides)))


def _maxpool(r: GraphReader, node):
    """MaxPool, exactly (a tree of pairwise maxes, max(a, b) = b + relu(a - b)) or as average pooling."""
    value = r.value(node)
    if len(node.output) > 1 and node.output[1]:
        unsupported(node, "the indices output of MaxPool is not supported")
    kernel, strides, out = _window(node, value)
    name = node_name(node)
    if r.maxpool == "average":
        r.approximations.append(f"MaxPool {name!r} -> average pooling")
        return _avgpool(r, node)
    level = [r.linear(value, LinearOp("select", value.shape, out, kernel=kernel, strides=strides, offset=(i, j)))
             for i in range(kernel[0]) for j in range(kernel[1])]
    count = 0
    while len(level) > 1:
        pairs, level = level, []
        for a, b in zip(pairs[0::2], pairs[1::2]):
            count += 1
            difference = Value(a.paths + [replace(p, scale=-p.scale) for p in b.paths], a.bias - b.bias, out)
            larger = r.population(difference, f"{name}/max{count}")  # relu(a - b)
            level.append(Value(b.paths + larger.paths, b.bias, out))
        if len(pairs) % 2:
            level.append(pairs[-1])
    r.set(node, level[0])


def _concat(r: GraphReader, node):
    names = list(node.input)
    if all(n in r.consts for n in names):
        r.consts[node.output[0]] = np.concatenate([r.consts[n] for n in names], axis=attributes(node)["axis"])
        return
    parts = [r.value(node, i) for i in range(len(names))]
    shape = parts[0].shape
    axis = attributes(node).get("axis", 1)
    if axis not in (1, -len(shape)) or any(p.shape[1:] != shape[1:] for p in parts):
        unsupported(node, f"only concatenation along the channel axis (1) is supported; inputs have shapes "
                    f"{[p.shape for p in parts]}, axis {axis}")
    out = (sum(p.shape[0] for p in parts), *shape[1:])
    paths, first = [], 0
    for part in parts:
        place = LinearOp("place", part.shape, out, offset=(first,))
        paths += [Path(p.source, p.ops + [place], p.scale) for p in part.paths]
        first += part.shape[0]
    r.set(node, Value(paths, np.concatenate([p.bias for p in parts]), out))


def _batchnorm(r: GraphReader, node):
    value = r.value(node)
    last = value.common_last_op()
    if last is None:
        unsupported(node, "BatchNormalization must follow a Gemm, MatMul or Conv so that it can be folded in")
    gamma, beta, mean, var = (r.const(node, name).astype(np.float64) for name in node.input[1:5])
    scale = gamma / np.sqrt(var + attributes(node).get("epsilon", 1e-5))
    folded = replace(last, weight=(last.weight * scale.reshape(-1, *[1] * (last.weight.ndim - 1))).astype(np.float32),
                     bias=((last.bias - mean) * scale + beta).astype(np.float32))
    per_feature = np.repeat(scale, value.size // len(scale))  # channels are the outer axis
    shift = np.repeat(beta - mean * scale, value.size // len(scale))
    r.set(node, Value(value.with_last_op(folded).paths, value.bias * per_feature + shift, value.shape))


def _reshape(r: GraphReader, node):
    value = r.value(node)
    if node.op_type == "Flatten":
        if attributes(node).get("axis", 1) != 1:
            unsupported(node, "only Flatten with axis=1 is supported")
        shape = (value.size,)
    else:
        target = [int(v) for v in r.const(node, node.input[1]).reshape(-1)]
        if len(target) < 2 or target[0] not in (-1, 0, r.batch or 1):
            unsupported(node, f"Reshape to {target} must keep the batch axis first")
        shape = target[1:]
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape[shape.index(-1)] = value.size // max(known, 1)
        shape = tuple(shape)
        if int(np.prod(shape)) != value.size:
            unsupported(node, f"Reshape to {target} does not keep the {value.size} features")
    r.set(node, Value(value.paths, value.bias, shape))


def _pad(r: GraphReader, node):
    """Pad with zeros around H and W (constant mode, value 0, batch and channels not padded)."""
    a = attributes(node)
    mode = a.get("mode", "constant")
    pads = [int(p) for p in (r.const(node, node.input[1]).reshape(-1) if _given(node, 1) else a.get("pads", []))]
    fill = _scalar(r, node, 2, 0.0)
    if _given(node, 3):
        unsupported(node, "Pad with axes is not supported")
    value = r.value(node)
    if mode != "constant" or fill != 0 or len(value.shape) != 3 or len(pads) != 8 or min(pads) < 0 \
            or any(pads[i] for i in (0, 1, 4, 5)):
        unsupported(node, f"only zero padding of H and W converts (mode {mode!r}, value {fill}, pads {pads})")
    top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    c, h, w = value.shape
    op = LinearOp("pad", value.shape, (c, h + top + bottom, w + left + right), pads=(top, left, bottom, right))
    r.set(node, r.linear(value, op))


def _relu(r: GraphReader, node):
    value = r.value(node)
    r.set(node, value if r.population_of(value) is not None else r.population(value, node_name(node)))


def _clip(r: GraphReader, node):
    """Clip(0, upper) (ReLU6 and the like): a ReLU population bounded at ``upper``."""
    a = attributes(node)  # opset < 11: min and max attributes; then optional constant inputs
    low, high = _scalar(r, node, 1, a.get("min")), _scalar(r, node, 2, a.get("max"))
    if low is None or low != 0:
        unsupported(node, f"only Clip with lower bound 0 converts (a bounded ReLU), got min {low}")
    value = r.value(node)
    stage = r.population_of(value)
    if stage is not None and r.readers[node.input[0]] == 1:  # a population read by this Clip only
        if high is not None:
            stage.upper = high if stage.upper is None else min(stage.upper, high)
        r.set(node, value)
        return
    r.set(node, r.population(value, node_name(node), None if high is None else float(high)))


def _passthrough(r: GraphReader, node):
    r.set(node, r.value(node))


def _constant(r: GraphReader, node):
    value = attributes(node).get("value")
    if value is None:
        unsupported(node, "only Constant nodes with a tensor 'value' are supported")
    r.consts[node.output[0]] = as_array(value)


HANDLERS = {"Gemm": _dense, "MatMul": _dense, "Add": _add, "Relu": _relu, "Clip": _clip, "Pad": _pad,
            "Flatten": _reshape, "Reshape": _reshape, "Conv": _conv, "AveragePool": _avgpool,
            "GlobalAveragePool": _avgpool, "MaxPool": _maxpool, "Concat": _concat, "BatchNormalization": _batchnorm,
            "Identity": _passthrough, "Dropout": _passthrough, "Constant": _constant}


def extract(path, maxpool: str = "exact") -> ConvertedModel:
    """Read an ONNX file into a :class:`ConvertedModel` (one-line SnnbenchError if it cannot);
    ``maxpool``: one of MAXPOOL_ROUTES (see the module docstring)."""
    check_choice("MaxPool route", maxpool, MAXPOOL_ROUTES)
    model = load_model(path)
    reader = GraphReader(model, maxpool)
    for node in model.graph.node:
        if node.op_type not in HANDLERS:
            unsupported(node)
        HANDLERS[node.op_type](reader, node)
    output = reader.values.get(reader.output)
    if output is None or not output.paths:
        raise UnsupportedModelError(f"{path}: the graph output {reader.output!r} does not depend on the input "
                                    "through supported nodes")
    logits = Stage(output.paths, output.bias, False, output.shape, reader.output)
    return ConvertedModel(reader.input_shape, reader.stages + [logits], str(path), reader.approximations)


