"""Reading an ONNX classifier into a ConvertedModel (:func:`extract`).

Supported ops (the graph at batch 1, shape computations folded: :func:`onnx_graph.load_model`): Gemm
(transB, alpha, beta), MatMul (by a constant), Add, Sub (a constant, or a sum / difference of two tensors),
Mul and Div by a constant (uniform, or per channel after a Gemm / MatMul / Conv), Relu, Clip (lower bound 0:
a bounded ReLU, e.g. ReLU6), Pad (zeros around H and W), Flatten, Reshape, Squeeze, Unsqueeze, Transpose (a
permutation of the values, folded into the dense layer after it), Conv (any zero padding, stride,
dilation, groups), AveragePool, GlobalAveragePool, MaxPool (padded and ceil-mode windows on the
non-negative values a ReLU gives), Concat (whole blocks in order), BatchNormalization (folded into the
Gemm / MatMul / Conv before it), consecutive dense layers (merged), Identity, Dropout, Cast, Constant.
Anything else stops with one line naming the op, the node and why.

MaxPool has two routes (``maxpool=``):

* ``"exact"``: max(a, b) = b + relu(a - b), a tree of pairwise maxes, each a hidden population
  holding relu(a - b) (stage ``<node>/max<k>``): exact in rate mode; in a spiking network every
  level of the tree is an extra spiking layer (more neurons, more latency);
* ``"average"``: average pooling instead; approximate, listed in ``ConvertedModel.approximations``.
"""

from dataclasses import replace

import numpy as np

from snnbench.conversion.graph import MAX_HELPER, ConvertedModel, LinearOp, LinearPath, Stage, conv_out_len, same_pads
from snnbench.conversion.onnx_graph import (GraphReader, Value, as_array, attributes, load_model, node_name,
                                           sample_shape, unsupported)
from snnbench.config import check_choice
from snnbench.errors import UnsupportedModelError

MAXPOOL_ROUTES = ("exact", "average")


def _given(node, index: int) -> bool:
    return len(node.input) > index and bool(node.input[index])


def _scalar(r: GraphReader, node, index: int, default):
    """The optional constant input ``index`` as a float, or ``default``."""
    return float(np.asarray(r.const(node, node.input[index])).reshape(-1)[0]) if _given(node, index) else default


def _dense(r: GraphReader, node):
    """Gemm (transB, alpha, beta) or MatMul by a constant 2-D weight; a permutation just before it
    is folded into its columns, a dense layer just before it (nothing between) merged with it."""
    if node.input[1] not in r.consts:
        unsupported(node, "a product of two data tensors (attention) is no layer of a feed-forward classifier"
                    if node.input[1] in r.values else f"{node.input[1]!r} must be a constant weight")
    value = r.value(node)
    a = attributes(node)
    if a.get("transA", 0):
        unsupported(node, "transA=1 is not supported")
    w = r.const(node, node.input[1])
    if w.ndim != 2:
        unsupported(node, f"expected a 2-D weight, got shape {w.shape}")
    w = a.get("alpha", 1.0) * (w if a.get("transB", 0) else w.T)
    r.require_row(node, value, w.shape[1])
    bias = np.zeros(w.shape[0], np.float32)
    if _given(node, 2):
        bias = bias + a.get("beta", 1.0) * np.broadcast_to(r.const(node, node.input[2]), bias.shape)
    permutation = value.common_last_op(("select",))
    if permutation is not None and permutation.size_in == permutation.size_out == w.shape[1]:
        order = permutation.indices()  # output j holds input order[j]: W x[order] = W[:, argsort(order)] x
        w, value = w[:, np.argsort(order)], Value(value.with_last_op(None).paths,
                                                  value.bias[np.argsort(order)], value.shape)
    before = value.common_last_op(("dense",))
    out_shape = (*value.shape[:-1], w.shape[0])
    if before is not None and r.readers[node.input[0]] == 1:
        merged = LinearOp("dense", before.in_shape, (w.shape[0],), (w.astype(np.float64) @ before.weight).astype(
            np.float32), (w.astype(np.float64) @ before.bias + bias).astype(np.float32))
        op = LinearOp("dense", (w.shape[1],), (w.shape[0],), w.astype(np.float32), bias.astype(np.float32))
        r.set(node, r.linear(value, op, out_shape).with_last_op(None).with_last_op(merged))
        return
    op = LinearOp("dense", (w.shape[1],), (w.shape[0],), w.astype(np.float32), bias.astype(np.float32))
    r.set(node, r.linear(value, op, out_shape))


def _broadcast(node, const: np.ndarray, shape: tuple) -> np.ndarray:
    """A constant operand (ONNX broadcasting) as a flat vector of the tensor's values."""
    c = np.asarray(const, np.float64)
    try:
        if np.broadcast_shapes(c.shape, shape) != tuple(shape):
            raise ValueError
        return np.broadcast_to(c, shape).reshape(-1)
    except ValueError:
        unsupported(node, f"constant of shape {const.shape} does not broadcast to the tensor's shape {shape}")


def _add(r: GraphReader, node, sign: float = 1.0):
    """Add (``sign`` 1) or Sub (-1): of two constants, of two tensors (a residual connection), or of a
    tensor and a constant (a bias)."""
    names = list(node.input)
    if all(n in r.consts for n in names):
        r.consts[node.output[0]] = r.consts[names[0]] + sign * r.consts[names[1]]
        return
    if all(n in r.values for n in names):  # a sum of two tensors (residual connection)
        a, b = r.value(node, 0), r.value(node, 1).scaled(sign)
        if a.size != b.size:
            unsupported(node, f"adding shapes {a.shape} and {b.shape} (broadcasting) is not supported")
        r.set(node, Value(a.paths + b.paths, a.bias + b.bias, a.shape, a.nonnegative and b.nonnegative))
        return
    index = 0 if names[0] in r.values else 1
    value = r.value(node, index)
    constant = _broadcast(node, r.const(node, names[1 - index]), value.shape)
    if index == 1:  # constant + x, constant - x
        value, constant = value.scaled(sign), constant
    else:
        constant = sign * constant
    last = value.common_last_op()
    if last is not None:
        per_output = constant.reshape(last.out_shape[0], -1)
        if np.all(per_output == per_output[:, :1]):  # the bias of a MatMul / Conv: recorded with the op too
            value = value.with_last_op(replace(last, bias=(last.bias + per_output[:, 0]).astype(np.float32)))
    r.set(node, Value(value.paths, value.bias + constant, value.shape, value.nonnegative and bool(np.all(constant >= 0))))


def _sub(r: GraphReader, node):
    _add(r, node, -1.0)


def _scale(r: GraphReader, node):
    """Mul or Div by a constant: uniform, or one factor per output of the Gemm / MatMul / Conv before it
    (folded into its weights and bias)."""
    names = list(node.input)
    if all(n in r.consts for n in names):
        x, y = r.consts[names[0]], r.consts[names[1]]
        r.consts[node.output[0]] = x * y if node.op_type == "Mul" else x / y
        return
    if node.op_type == "Div" and names[1] not in r.consts:
        unsupported(node, "dividing by a data tensor is no linear map")
    if all(n in r.values for n in names):
        unsupported(node, "a product of two data tensors (gating, attention) is no linear map")
    index = 0 if names[0] in r.values else 1
    value = r.value(node, index)
    factor = _broadcast(node, r.const(node, names[1 - index]), value.shape)
    factor = 1.0 / factor if node.op_type == "Div" else factor
    if np.all(factor == factor[0]):
        r.set(node, value.scaled(float(factor[0])))
        return
    last = value.common_last_op()
    per_output = factor.reshape(last.out_shape[0], -1) if last is not None else None
    if per_output is None or not np.all(per_output == per_output[:, :1]):
        unsupported(node, f"a {node.op_type} by a constant that varies within a channel is not supported")
    r.set(node, _fold_channel_affine(value, last, per_output[:, 0], np.zeros(len(per_output))))


def _fold_channel_affine(value: Value, last: LinearOp, scale: np.ndarray, shift: np.ndarray) -> Value:
    """``value * scale + shift`` per output channel, folded into ``last`` (the op every path ends with)."""
    folded = replace(last, weight=(last.weight * scale.reshape(-1, *[1] * (last.weight.ndim - 1))).astype(np.float32),
                     bias=((last.bias * scale) + shift).astype(np.float32))
    per_feature, per_shift = np.repeat(scale, value.size // len(scale)), np.repeat(shift, value.size // len(scale))
    return Value(value.with_last_op(folded).paths, value.bias * per_feature + per_shift, value.shape)


def _image(node, value: Value) -> tuple:
    """(C, H, W) of an image tensor (batch 1)."""
    if len(value.shape) != 4 or value.shape[0] != 1:
        unsupported(node, f"{node.op_type} needs an (N, C, H, W) input, got shape {value.shape}")
    return value.shape[1:]


def _conv(r: GraphReader, node):
    value = r.value(node)
    shape = _image(node, value)
    a = attributes(node)
    w = r.const(node, node.input[1])
    groups = int(a.get("group", 1))
    channels = shape[0]
    if w.ndim != 4 or channels % groups or w.shape[1] * groups != channels or w.shape[0] % groups:
        unsupported(node, f"expected a 2-D convolution kernel (out, {channels} / {groups} groups, kh, kw) for "
                    f"{channels} input channels, got {w.shape}")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(int(s) for s in a.get("strides", [1, 1]))
    dilations = tuple(int(d) for d in a.get("dilations", [1, 1]))
    dilated = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    pads = _used_pads(node, a, shape[1:], dilated, strides)
    bias = r.const(node, node.input[2]) if _given(node, 2) else np.zeros(w.shape[0])
    out_hw = [conv_out_len(shape[i + 1], dilated[i], strides[i], pads[i], pads[i + 2]) for i in range(2)]
    if min(out_hw) < 1:
        unsupported(node, f"the kernel {dilated} does not fit the padded input {shape}")
    op = LinearOp("conv", shape, (w.shape[0], *out_hw), w.astype(np.float32),
                  np.asarray(bias, np.float32), kernel, strides, pads=pads, groups=groups, dilations=dilations)
    r.set(node, r.linear(value, op))


def _explicit_pads(node, a, size, kernel, strides) -> list:
    """(top, left, bottom, right) of a conv or pooling node's ``auto_pad`` / ``pads``."""
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
    return pads


def _used_pads(node, a, size, kernel, strides) -> tuple:
    """(top, left, bottom, right) zero padding, less the trailing rows / columns that no window
    reaches (so that e.g. PyTorch's stride-2 padding 1 on an even size is its real top-left pad)."""
    pads = _explicit_pads(node, a, size, kernel, strides)
    for i in range(2):
        out = conv_out_len(size[i], kernel[i], strides[i], pads[i], pads[i + 2])
        reach = (out - 1) * strides[i] + kernel[i]  # padded rows that the windows cover
        pads[i + 2] = max(0, min(pads[i + 2], reach - size[i] - pads[i]))
    return tuple(pads)


def _window(r: GraphReader, node, value: Value) -> tuple:
    """(value zero-padded as the windows need, kernel, strides, output shape) of a pooling node.
    Padding (and ceil mode's extra windows) is exact for MaxPool on non-negative values only."""
    c, h, w = _image(node, value)
    if node.op_type == "GlobalAveragePool":
        return value, (h, w), (1, 1), (c, 1, 1)
    a = attributes(node)
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        unsupported(node, "dilated pooling is not supported")
    kernel, strides = tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1]))
    pads = _explicit_pads(node, a, (h, w), kernel, strides)
    out = []
    for i, n in enumerate((h, w)):
        span = n + pads[i] + pads[i + 2] - kernel[i]
        count = (-(-span // strides[i]) if a.get("ceil_mode", 0) else span // strides[i]) + 1
        if a.get("ceil_mode", 0) and (count - 1) * strides[i] >= n + pads[i]:
            count -= 1  # a window must start inside the input or its leading pad
        out.append(count)
        pads[i + 2] = max(pads[i + 2], (count - 1) * strides[i] + kernel[i] - n - pads[i])
    if any(pads):
        if node.op_type != "MaxPool" or not value.nonnegative:
            unsupported(node, "padded or ceil-mode pooling converts only as a MaxPool of non-negative values (after "
                        "a ReLU)")
        top, left, bottom, right = pads
        op = LinearOp("pad", (c, h, w), (c, h + top + bottom, w + left + right), pads=tuple(pads))
        value = r.linear(value, op)
    return value, kernel, strides, (c, *out)


def _avgpool(r: GraphReader, node):
    value, kernel, strides, out = _window(r, node, r.value(node))
    r.set(node, r.linear(value, LinearOp("avgpool", _image(node, value), out, kernel=kernel, strides=strides)))


def _maxpool(r: GraphReader, node):
    """MaxPool, exactly (a tree of pairwise maxes, max(a, b) = b + relu(a - b)) or as average pooling."""
    if len(node.output) > 1 and node.output[1]:
        unsupported(node, "the indices output of MaxPool is not supported")
    value, kernel, strides, out = _window(r, node, r.value(node))
    shape = _image(node, value)
    name = node_name(node)
    if r.maxpool == "average":
        r.approximations.append(f"MaxPool {name!r} -> average pooling")
        r.set(node, r.linear(value, LinearOp("avgpool", shape, out, kernel=kernel, strides=strides)))
        return
    level = [r.linear(value, LinearOp("select", shape, out, kernel=kernel, strides=strides, offset=(i, j)))
             for i in range(kernel[0]) for j in range(kernel[1])]
    count = 0
    while len(level) > 1:
        pairs, level = level, []
        for a, b in zip(pairs[0::2], pairs[1::2]):
            count += 1
            difference = Value(a.paths + [replace(p, scale=-p.scale) for p in b.paths], a.bias - b.bias, a.shape)
            larger = r.population(difference, MAX_HELPER.format(node=name, k=count))  # relu(a - b)
            level.append(Value(b.paths + larger.paths, b.bias, a.shape))
        if len(pairs) % 2:
            level.append(pairs[-1])
    r.set(node, replace(level[0], nonnegative=value.nonnegative))


def _concat(r: GraphReader, node):
    names = list(node.input)
    axis = attributes(node).get("axis", 1)
    if all(n in r.consts for n in names):
        r.consts[node.output[0]] = np.concatenate([r.consts[n] for n in names], axis=axis)
        return
    parts = [r.value(node, i) for i in range(len(names))]
    rank = len(parts[0].shape)
    axis = axis % rank
    if any(len(p.shape) != rank or p.shape[:axis] + p.shape[axis + 1:] != parts[0].shape[:axis] +
           parts[0].shape[axis + 1:] for p in parts) or np.prod(parts[0].shape[:axis]) != 1:
        unsupported(node, f"only concatenation of whole blocks (along the first axis longer than 1, e.g. channels) is "
                    f"supported; inputs have shapes {[p.shape for p in parts]}, axis {axis}")
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    size = int(np.prod(shape))
    paths, first = [], 0
    for part in parts:
        place = LinearOp("place", (part.size,), (size,), offset=(first,))
        paths += [LinearPath(p.source, p.ops + [place], p.scale) for p in part.paths]
        first += part.size
    r.set(node, Value(paths, np.concatenate([p.bias for p in parts]), tuple(shape),
                      all(p.nonnegative for p in parts)))


def _batchnorm(r: GraphReader, node):
    value = r.value(node)
    last = value.common_last_op()
    if last is None:
        unsupported(node, "BatchNormalization must follow a Gemm, MatMul or Conv so that it can be folded in")
    gamma, beta, mean, var = (r.const(node, name).astype(np.float64) for name in node.input[1:5])
    scale = gamma / np.sqrt(var + attributes(node).get("epsilon", 1e-5))
    r.set(node, _fold_channel_affine(value, last, scale, beta - mean * scale))


def _reshape(r: GraphReader, node):
    """Reshape, Flatten, Squeeze, Unsqueeze: the values in their order, another shape."""
    value = r.value(node)
    a, shape = attributes(node), list(value.shape)
    if node.op_type == "Flatten":
        axis = a.get("axis", 1) % max(len(shape), 1)
        target = [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
    elif node.op_type == "Reshape":
        target = [int(v) for v in r.const(node, node.input[1]).reshape(-1)]
        if not a.get("allowzero", 0):
            target = [shape[i] if t == 0 and i < len(shape) else t for i, t in enumerate(target)]
        if -1 in target:
            known = int(np.prod([t for t in target if t != -1]))
            target[target.index(-1)] = value.size // max(known, 1)
    else:
        axes = [int(v) for v in (r.const(node, node.input[1]).reshape(-1) if _given(node, 1) else a.get("axes", []))]
        if node.op_type == "Squeeze":
            axes = [x % len(shape) for x in axes] or [i for i, s in enumerate(shape) if s == 1]
            target = [s for i, s in enumerate(shape) if i not in axes]
        else:
            target = list(shape)
            for x in sorted(x % (len(shape) + len(axes)) for x in axes):
                target.insert(x, 1)
    if int(np.prod(target)) != value.size:
        unsupported(node, f"reshaping {tuple(shape)} to {target} does not keep the {value.size} values")
    r.set(node, value.reshaped(target))


def _transpose(r: GraphReader, node):
    """A permutation of the values (none where only axes of size 1 move)."""
    value = r.value(node)
    perm = attributes(node).get("perm", list(reversed(range(len(value.shape)))))
    order = np.arange(value.size).reshape(value.shape).transpose(perm).reshape(-1)
    shape = tuple(value.shape[p] for p in perm)
    if np.array_equal(order, np.arange(value.size)):
        r.set(node, value.reshaped(shape))
        return
    op = LinearOp("select", (value.size,), (value.size,), index=order)
    r.set(node, r.linear(value, op, shape))


def _pad(r: GraphReader, node):
    """Pad with zeros around H and W (constant mode, value 0, batch and channels not padded)."""
    a = attributes(node)
    mode = a.get("mode", "constant")
    pads = [int(p) for p in (r.const(node, node.input[1]).reshape(-1) if _given(node, 1) else a.get("pads", []))]
    fill = _scalar(r, node, 2, 0.0)
    if _given(node, 3):
        unsupported(node, "Pad with axes is not supported")
    value = r.value(node)
    if mode != "constant" or fill != 0 or len(value.shape) != 4 or len(pads) != 8 or min(pads) < 0 \
            or any(pads[i] for i in (0, 1, 4, 5)):
        unsupported(node, f"only zero padding of H and W converts (mode {mode!r}, value {fill}, pads {pads})")
    top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    c, h, w = _image(node, value)
    op = LinearOp("pad", (c, h, w), (c, h + top + bottom, w + left + right), pads=(top, left, bottom, right))
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
    if node.op_type == "Cast" and attributes(node).get("to") not in (1, 10, 11, 16):  # float types
        unsupported(node, "a Cast to a non-float type is no layer of a classifier")
    if node.input[0] in r.consts:
        r.consts[node.output[0]] = r.consts[node.input[0]]
        return
    r.set(node, r.value(node))


def _constant(r: GraphReader, node):
    a = attributes(node)
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            value = a[key]
            r.consts[node.output[0]] = as_array(value) if key == "value" else np.asarray(
                value, np.float32 if "float" in key else np.int64)
            return
    unsupported(node, f"a Constant with {', '.join(a) or 'no value'} is not supported")


HANDLERS = {  # the supported ops, each with the function that reads it
    "Gemm": _dense, "MatMul": _dense, "Add": _add, "Sub": _sub, "Mul": _scale, "Div": _scale, "Relu": _relu,
    "Clip": _clip, "Pad": _pad, "Flatten": _reshape, "Reshape": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Transpose": _transpose, "Conv": _conv, "AveragePool": _avgpool, "GlobalAveragePool": _avgpool,
    "MaxPool": _maxpool, "Concat": _concat, "BatchNormalization": _batchnorm, "Identity": _passthrough,
    "Dropout": _passthrough, "Cast": _passthrough, "Constant": _constant,
}
WHY_NOT = {  # why an op that is no linear map or ReLU-like activation cannot become spiking populations
    **{op: "a hidden activation other than ReLU (or Clip(0, a)) has no spiking rate equivalent here; only the last "
           "layer's Softmax, LogSoftmax or Sigmoid is dropped as the classifier head"
       for op in ("Tanh", "Sigmoid", "Softmax", "LogSoftmax", "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu",
                  "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "Erf")},
    **{op: "a recurrent layer keeps a state across its sequence; convert a feed-forward network"
       for op in ("LSTM", "GRU", "RNN", "Scan", "Loop")},
    **{op: "a shape computation that depends on the data; give the model a fixed sample size"
       for op in ("Shape", "Gather", "Size", "NonZero", "Expand", "Range", "ConstantOfShape")},
}


def extract(path, maxpool: str = "exact") -> ConvertedModel:
    """Read an ONNX file into a :class:`ConvertedModel` (one-line SnnbenchError if it cannot);
    ``maxpool``: one of MAXPOOL_ROUTES (see the module docstring)."""
    check_choice("MaxPool route", maxpool, MAXPOOL_ROUTES)
    model = load_model(path)
    reader = GraphReader(model, maxpool)
    for node in model.graph.node:
        if node.op_type not in HANDLERS:
            unsupported(node, WHY_NOT.get(node.op_type, f"supported ops: {', '.join(HANDLERS)}"))
        HANDLERS[node.op_type](reader, node)
    output = reader.values.get(reader.output)
    if output is None or not output.paths:
        raise UnsupportedModelError(f"{path}: the graph output {reader.output!r} does not depend on the input "
                                    "through supported nodes")
    logits = Stage(output.paths, output.bias, False, sample_shape(output.shape), reader.output)
    return ConvertedModel(reader.input_shape, reader.stages + [logits], str(path), reader.approximations)
