"""Any ONNX classifier, as snnbench reads it: the user's file normalised, and how data reaches it.

:func:`prepare` takes an ONNX file from any exporter and writes, into a folder, the graph every engine
runs (``model.onnx``: ONNX Runtime runs it as it is, the converter reads it at batch 1) and how a data
set's samples become its input (:class:`InputEncoding`, ``encoder.onnx``, ``prepared.json``):

* **file**: initializers dropped from the graph inputs, nodes sorted topologically, one output kept
  (``output``, the first by default), and an unbatched graph (a ``(10,)`` output) given a batch axis;
* **same network**: ``Relu(MaxPool(x))`` taken as ``MaxPool(Relu(x))`` (max and ReLU commute);
* **head**: a monotonic function after the last layer (Softmax or LogSoftmax over the classes,
  Sigmoid) is dropped: the predicted class is the argmax either way, and the SNN's readout compares
  with the logits;
* **input**: a fixed elementwise function of the raw input before the first weight (a Sub / Div
  normalisation, a Rescaling Mul, a Sigmoid, with the reshapes and transposes around it) is the input
  encoding (``encoder.onnx``), run by ONNX Runtime for every engine alike; the data set's samples are
  laid out as the file's input wants them (flat, CHW, HWC, HW, grey given as 3 channels) after the
  user's preprocessing ``x = (p * scale - mean) / std`` (per channel where given per channel).

:func:`fixed_batch` is what the converter reads: the graph at batch 1 with every shape computation
and constant folded (onnx-simplifier; BatchNormalization and Pad are left for the converter to fold, BN in float64).
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from snnbench.config import option
from snnbench.errors import ConfigError, DataError, UnsupportedModelError
from snnbench.models.export import ONNX_FILE

HEADS = ("Softmax", "LogSoftmax", "Sigmoid")  # monotonic per class: the argmax is kept
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # keep the values and their order
ENCODER_OPS = RESHAPES + ("Transpose", "Sub", "Div", "Mul", "Add", "Sigmoid", "Tanh", "Cast", "Clip")
ENCODER_FILE, NOTES_FILE = "encoder.onnx", "prepared.json"


def _floats(text) -> tuple:
    values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    if not values:
        raise ValueError("give one value, or one per channel")
    return values


@dataclass(frozen=True)
class ModelInput:
    """How a user's ONNX file is read and fed: the output that holds the class scores, and the
    preprocessing ``x = (p * scale - mean) / std`` of a data set's value ``p`` (pixels in 0..1),
    ``mean`` and ``std`` one value or one per channel."""
    output: str = option("", "the graph output that holds the class scores (default: the first)", group="your model")
    input_scale: float = option(1.0, "the model's input is (p * scale - mean) / std for a data value p (pixels in "
                                     "0..1): 255 feeds raw bytes", float, group="your model")
    input_mean: tuple = option((0.0,), "mean subtracted after scaling: one value or one per channel, comma-separated",
                               _floats, group="your model")
    input_std: tuple = option((1.0,), "divisor after the mean: one value or one per channel, comma-separated",
                              _floats, group="your model")

    def __post_init__(self):
        if not np.isfinite(self.input_scale) or self.input_scale == 0:
            raise ConfigError(f"--input-scale must be a nonzero number, got {self.input_scale}")
        if any(s == 0 or not np.isfinite(s) for s in self.input_std):
            raise ConfigError(f"--input-std must be nonzero numbers, got {list(self.input_std)}")

    @property
    def is_identity(self) -> bool:
        return self.input_scale == 1 and set(self.input_mean) == {0.0} and set(self.input_std) == {1.0}

    def apply(self, x: np.ndarray, shape: tuple, channel_axis: int | None) -> np.ndarray:
        """``x`` (n, features) of samples shaped ``shape``, preprocessed; ``mean`` and ``std`` per
        channel along ``channel_axis`` of ``shape`` (None: per value)."""
        if self.is_identity:
            return np.asarray(x, np.float32)
        per = shape[channel_axis] if channel_axis is not None else int(np.prod(shape))
        broadcast = [1] * len(shape)
        if channel_axis is not None:
            broadcast[channel_axis] = -1
        stats = []
        for name, values in (("--input-mean", self.input_mean), ("--input-std", self.input_std)):
            if len(values) not in (1, per):
                raise ConfigError(f"{name} has {len(values)} values but the model's samples have shape {tuple(shape)}"
                                  f"{f' ({per} channels)' if channel_axis is not None else ''}; give one value or "
                                  f"{per}")
            stats.append(np.asarray(values, np.float32).reshape(broadcast if len(values) > 1 else [1] * len(shape)))
        shaped = np.asarray(x, np.float32).reshape(len(x), *shape)
        return ((shaped * np.float32(self.input_scale) - stats[0]) / stats[1]).reshape(len(x), -1)


@dataclass
class PreparedModel:
    """A normalised classifier in ``folder``: ``model.onnx`` (what every engine runs), the encoding of
    its input, and what was changed (``notes``)."""
    folder: Path
    input_shape: tuple                  # the data tensor ``model.onnx`` takes per sample
    layout: str                         # how a data sample is laid out into the file's input
    raw_shape: tuple                    # the file's own input per sample
    model_input: ModelInput = field(default_factory=ModelInput)
    notes: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / ONNX_FILE

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    def encode(self, x: np.ndarray, sample_shape: tuple, batch: int = 1000) -> np.ndarray:
        """Data samples ``x`` (n, features) shaped ``sample_shape`` -> the flat inputs of ``model.onnx``
        (float32): preprocessing, layout, then the graph's own input encoding."""
        x = self.model_input.apply(lay_out(x, tuple(sample_shape), self.layout, self.raw_shape), self.raw_shape,
                                   channel_axis(self.layout, self.raw_shape))
        encoder = self.folder / ENCODER_FILE
        if not encoder.exists():
            return x
        import onnxruntime as ort

        session = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"])
        name, dims = session.get_inputs()[0].name, session.get_inputs()[0].shape
        step = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else batch
        out = [session.run(None, {name: x[a: a + step].reshape(-1, *self.raw_shape)})[0].reshape(
            len(x[a: a + step]), -1) for a in range(0, len(x), step)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.n_inputs), np.float32)

    def agreement(self, x: np.ndarray, sample_shape: tuple) -> dict:
        """How the normalised graph (on encoded inputs) agrees with the user's file (on the same samples
        preprocessed and laid out): the share of equal predicted classes, and the max |difference| of
        the scores where no head was dropped."""
        import onnxruntime as ort

        laid_out = self.model_input.apply(lay_out(x, tuple(sample_shape), self.layout, self.raw_shape),
                                          self.raw_shape, channel_axis(self.layout, self.raw_shape))
        session = ort.InferenceSession(self.notes["source"], providers=["CPUExecutionProvider"])
        declared = session.get_inputs()[0]
        unbatched = "batch_axis" in self.notes
        step = 1 if unbatched or isinstance(declared.shape[0], int) else 1000
        original = []
        for a in range(0, len(x), step):
            batch = laid_out[a: a + step].reshape(-1, *self.raw_shape)
            fed = batch[0] if unbatched else batch
            original.append(np.asarray(session.run([self.notes["output"]], {declared.name: fed})[0]).reshape(
                len(batch), -1))
        original = np.concatenate(original)
        ours = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        encoded = self.encode(x, sample_shape).reshape(len(x), *self.input_shape)
        step = ours.get_inputs()[0].shape[0]
        step = step if isinstance(step, int) else 1000
        scores = np.concatenate([ours.run(None, {ours.get_inputs()[0].name: encoded[a: a + step]})[0].reshape(
            len(encoded[a: a + step]), -1) for a in range(0, len(x), step)])
        out = {"prepared_class_agreement": float(np.mean(original.argmax(1) == scores.argmax(1)))}
        if not self.notes.get("dropped_head"):
            out["prepared_max_abs_diff"] = float(np.abs(original - scores).max())
        return out


# -- the file ------------------------------------------------------------------------------------------------

def load(path) -> onnx.ModelProto:
    """The ONNX file, its initializers removed from the inputs and its nodes sorted topologically,
    checked (one line saying what is wrong if it is no valid ONNX model)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ONNX model {path} not found; pass the path of a .onnx file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for unreadable files
        raise DataError(f"{path} is not an ONNX file ({_first_line(exc)}); pass a .onnx model file") from None
    graph = model.graph
    constant = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constant]
    del graph.input[:]
    graph.input.extend(inputs)
    _sort_nodes(graph, path)
    _constants_as_tensors(graph)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker raises ValidationError and others
        raise DataError(f"{path} is not a valid ONNX model ({_first_line(exc)}); repair the file or export it "
                        "again") from None
    return model


def _first_line(exc) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _constants_as_tensors(graph):
    """Every Constant node written with a ``value`` tensor (``value_float``, ``value_ints``, ... too)."""
    for node in graph.node:
        if node.op_type != "Constant" or any(a.name == "value" for a in node.attribute):
            continue
        given = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                           ("value_ints", np.int64)):
            if key in given:
                tensor = onnx.numpy_helper.from_array(np.asarray(given[key], dtype), node.output[0])
                del node.attribute[:]
                node.attribute.extend([helper.make_attribute("value", tensor)])
                break


def _sort_nodes(graph, path):
    """Sort the nodes so that each comes after the nodes it reads (some exporters write them in
    another order; ONNX requires this one)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            missing = sorted({i for n in pending for i in n.input} - available - {o for n in pending for o in n.output})
            raise DataError(f"{path}: the graph reads tensors that nothing produces ({', '.join(missing[:5])}) or has "
                            "a cycle; repair the file or export it again")
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _dims(value_info) -> list:
    """Declared dims: ints, or None where symbolic or unknown."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def _prune(model: onnx.ModelProto):
    """Drop the nodes and initializers that no output needs."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _choose_output(model: onnx.ModelProto, output: str, path) -> str:
    outputs = [o.name for o in model.graph.output]
    if output and output not in outputs:
        raise ConfigError(f"--output {output!r} is not an output of {path}; its outputs are {', '.join(outputs)}")
    chosen = output or outputs[0]
    kept = [o for o in model.graph.output if o.name == chosen]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    _prune(model)
    return chosen


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _readers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input] + [o for o in graph.output if o.name == name]


def _is_head(node, rank: int) -> bool:
    """A monotonic function of each class score (over the class axis for the softmaxes)."""
    if node.op_type == "Sigmoid":
        return True
    if node.op_type not in ("Softmax", "LogSoftmax"):
        return False
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
    return rank < 1 or axis % max(rank, 1) == rank - 1


def _tensor_info(name: str, dims) -> onnx.ValueInfoProto:
    """A float tensor's value info, ``dims`` as known (None: symbolic)."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [d if d else f"{name}_dim{i}"
                                                                   for i, d in enumerate(dims)])


def _drop_heads(model: onnx.ModelProto, shapes: dict) -> list:
    """Take the graph output from before its head (see :data:`HEADS`); the head ops dropped."""
    graph, dropped = model.graph, []
    while True:
        name = graph.output[0].name
        node = _producers(graph).get(name)
        if node is None or not (node.op_type == "Identity" or _is_head(node, len(shapes.get(name, (0, 0))))):
            break
        if len(_readers(graph, name)) > 1:
            break
        if node.op_type != "Identity":
            dropped.append(f"{node.op_type} {node.name or name!r}")
        del graph.output[:]
        graph.output.extend([_tensor_info(node.input[0], shapes.get(node.input[0], (None, None)))])
        graph.node.remove(node)
    return dropped


def _add_batch_axis(model: onnx.ModelProto, shape: tuple):
    """An unbatched graph (input ``shape``, a 1-D output) fed a batch of 1: the input gains a
    leading axis of 1 that a Reshape removes, the output one that a Reshape adds."""
    graph = model.graph
    name, out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.input[:] = [f"{name}/unbatched" if t == name else t for t in node.input]
        node.output[:] = [f"{out}/unbatched" if t == out else t for t in node.output]
    graph.initializer.extend([onnx.numpy_helper.from_array(np.asarray(shape, np.int64), f"{name}/sample_shape"),
                              onnx.numpy_helper.from_array(np.asarray([1, -1], np.int64), f"{out}/batched_shape")])
    graph.node.insert(0, helper.make_node("Reshape", [name, f"{name}/sample_shape"], [f"{name}/unbatched"],
                                          name="snnbench/unbatch_input"))
    graph.node.append(helper.make_node("Reshape", [f"{out}/unbatched", f"{out}/batched_shape"], [out],
                                       name="snnbench/batch_output"))
    graph.input[0].CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, *shape]))
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, None])])


def _constant_inputs(graph) -> set:
    return {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _encoder_chain(model: onnx.ModelProto) -> list:
    """The chain of elementwise and shape nodes that the raw input passes before the first weight:
    each reads the previous tensor (and constants) only, and is its only reader. Empty unless the
    chain changes values or their order (reshapes alone stay in the graph)."""
    graph = model.graph
    constants = _constant_inputs(graph)
    tensor, chain = graph.input[0].name, []
    while True:
        readers = _readers(graph, tensor)
        if len(readers) != 1 or not isinstance(readers[0], onnx.NodeProto):
            break
        node = readers[0]
        data = [i for i in node.input if i and i not in constants]
        if node.op_type not in ENCODER_OPS or data != [tensor] or len(node.output) != 1:
            break
        if node.op_type in ("Sub", "Div") and node.input[0] != tensor:
            break  # constant - x, constant / x: left to the converter
        chain.append(node)
        tensor = node.output[0]
    while chain and chain[-1].op_type in RESHAPES:
        chain.pop()  # trailing reshapes stay in the graph
    return chain if any(n.op_type not in RESHAPES for n in chain) else []


def _split_encoder(model: onnx.ModelProto, chain: list, shapes: dict) -> onnx.ModelProto:
    """Cut ``chain`` off ``model`` (which then reads the chain's output as its input); the encoder
    model (the raw input -> the chain's output)."""
    graph = model.graph
    cut = chain[-1].output[0]
    dims = shapes.get(cut)
    if dims is None or any(d is None for d in dims[1:]):
        raise UnsupportedModelError(f"the input encoding ({', '.join(n.op_type for n in chain)}) ends in tensor "
                                    f"{cut!r} of unknown shape; give the model a fixed input size")
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    constants = {t.name for t in graph.initializer}
    used = {i for n in chain for i in n.input}
    constant_nodes = [n for n in graph.node if n.op_type == "Constant" and n.output[0] in used]
    encoder = helper.make_graph(
        constant_nodes + [onnx.NodeProto.FromString(n.SerializeToString()) for n in chain], "input_encoding",
        [onnx.ValueInfoProto.FromString(graph.input[0].SerializeToString())],
        [_tensor_info(cut, dims)],
        [t for t in graph.initializer if t.name in used and t.name in constants])
    encoder_model = helper.make_model(encoder, opset_imports=model.opset_import, ir_version=model.ir_version)
    for node in chain:
        graph.node.remove(node)
    new_input = helper.make_tensor_value_info(cut, TensorProto.FLOAT, [batch.dim_param or batch.dim_value or "batch",
                                                                       *dims[1:]])
    del graph.input[:]
    graph.input.extend([new_input])
    _prune(model)
    return encoder_model


def _tensor_ranks_and_shapes(model: onnx.ModelProto) -> dict:
    inferred = shape_inference.infer_shapes(model).graph
    return {v.name: tuple(_dims(v)) for v in (*inferred.input, *inferred.value_info, *inferred.output)
            if v.type.tensor_type.HasField("shape")}


# -- layout ---------------------------------------------------------------------------------------------------

LAYOUTS = ("flat", "chw", "hwc", "grey-as-3-chw", "grey-as-3-hwc")


def layout_for(sample_shape: tuple, raw_shape: tuple, data_name: str = "the data set") -> str:
    """How samples shaped ``sample_shape`` ((C, H, W) or (F,)) are laid out into a model input of
    per-sample shape ``raw_shape`` (one line naming both if they do not fit)."""
    size, want = int(np.prod(sample_shape)), int(np.prod(raw_shape))
    image = len(sample_shape) == 3
    if image and len(raw_shape) == 3 and raw_shape == (*sample_shape[1:], sample_shape[0]) and sample_shape[0] > 1:
        return "hwc"
    if size == want and (not image or sample_shape[0] == 1 or len(raw_shape) != 3 or raw_shape == sample_shape):
        return "flat" if not image or sample_shape[0] == 1 else "chw"
    if image and sample_shape[0] == 1 and want == 3 * size and len(raw_shape) == 3:
        if raw_shape == (3, *sample_shape[1:]):
            return "grey-as-3-chw"
        if raw_shape == (*sample_shape[1:], 3):
            return "grey-as-3-hwc"
    raise DataError(f"the model takes samples of shape {raw_shape} ({want} values) but {data_name}'s samples have "
                    f"shape {tuple(sample_shape)} ({size} values); give a data set whose samples fit the model")


def channel_axis(layout: str, raw_shape: tuple) -> int | None:
    """The channel axis of a model input of per-sample shape ``raw_shape`` laid out as ``layout``."""
    if len(raw_shape) != 3:
        return None
    return 2 if layout.endswith("hwc") or (raw_shape[-1] in (1, 3, 4) and raw_shape[0] not in (1, 3, 4)) else 0


def lay_out(x: np.ndarray, sample_shape: tuple, layout: str, raw_shape: tuple) -> np.ndarray:
    """Flat samples in the data set's layout -> flat samples in the model's (see :func:`layout_for`)."""
    n = len(x)
    if layout in ("flat", "chw"):
        return np.ascontiguousarray(x, np.float32)
    images = np.asarray(x, np.float32).reshape(n, *sample_shape)
    if layout.startswith("grey-as-3"):
        images = np.repeat(images, 3, axis=1)
    if layout.endswith("hwc"):
        images = images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images.reshape(n, -1))


# -- prepare ---------------------------------------------------------------------------------------------------

def prepare(path, folder, sample_shape: tuple, model_input: ModelInput = ModelInput(),
            data_name: str = "the data set") -> PreparedModel:
    """Normalise the ONNX file at ``path`` into ``folder`` (see the module docstring) for a data set
    whose samples have shape ``sample_shape``; one line saying what is wrong if it cannot."""
    model = load(path)
    if len(model.graph.input) != 1:
        raise UnsupportedModelError(f"{path} has {len(model.graph.input)} data inputs "
                                    f"({', '.join(i.name for i in model.graph.input)}); a classifier takes one")
    notes = {"source": str(path), "output": _choose_output(model, model_input.output, path)}
    declared = _dims(model.graph.input[0])
    shapes = _tensor_ranks_and_shapes(model)
    out_dims = shapes.get(model.graph.output[0].name) or tuple(_dims(model.graph.output[0]))
    if not declared or None in declared[1:]:
        raise UnsupportedModelError(f"{path}: input {model.graph.input[0].name!r} has shape {declared} with unknown "
                                    "feature sizes; export the model with a fixed sample size")
    notes["dropped_head"] = _drop_heads(model, shapes)
    _prune(model)
    notes["relu_before_maxpool"] = _commute_maxpool_relu(model.graph)
    if declared[0] is not None and len(out_dims) == 1:  # one unbatched sample in, one score vector out
        _add_batch_axis(model, tuple(declared))
        notes["batch_axis"] = "added: the file takes one unbatched sample"
    shapes = _tensor_ranks_and_shapes(model)
    raw_shape = tuple(_dims(model.graph.input[0])[1:])
    layout = layout_for(tuple(sample_shape), raw_shape, data_name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chain = _encoder_chain(model)
    if chain:
        onnx.save(_split_encoder(model, chain, shapes), str(folder / ENCODER_FILE))
        notes["input_encoding"] = [f"{n.op_type} {n.name!r}" for n in chain]
    input_shape = tuple(_dims(model.graph.input[0])[1:])
    notes.update(layout=layout, raw_input_shape=list(raw_shape), input_shape=list(input_shape),
                 model_input=asdict(model_input))
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / ONNX_FILE))
    (folder / NOTES_FILE).write_text(json.dumps(notes, indent=1))
    return PreparedModel(folder, input_shape, layout, raw_shape, model_input, notes)


def prepared_copy(path, sample_shape: tuple, model_input: ModelInput = ModelInput(),
                  data_name: str = "the data set") -> PreparedModel:
    """:func:`prepare` into the cache (keyed by the file's bytes and the options), so that every
    process of a run (and a resumed run) reads the same normalised graph."""
    from snnbench.data.download import cache_root

    path = Path(path)
    if not path.is_file():
        raise DataError(f"ONNX model {path} not found; pass the path of a .onnx file")
    key = hashlib.sha256(path.read_bytes())
    key.update(json.dumps([list(sample_shape), asdict(model_input)]).encode())
    folder = cache_root() / "prepared" / key.hexdigest()[:20]
    if (folder / NOTES_FILE).exists():
        notes = {**json.loads((folder / NOTES_FILE).read_text()), "source": str(path)}
        return PreparedModel(folder, tuple(notes["input_shape"]), notes["layout"], tuple(notes["raw_input_shape"]),
                             model_input, notes)
    staging = folder.with_name(f"{folder.name}.{os.getpid()}.part")
    try:
        prepared = prepare(path, staging, sample_shape, model_input, data_name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
        return prepared_copy(path, sample_shape, model_input, data_name)
    staging.rename(folder)
    prepared.folder = folder
    return prepared


# -- the graph the converter reads ----------------------------------------------------------------------------

def fixed_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` at batch 1 with shape computations and constants folded (see the module docstring)."""
    import onnxsim

    declared = _dims(model.graph.input[0])
    if not declared or None in declared[1:]:
        return model
    try:
        simplified, ok = onnxsim.simplify(model, skip_fuse_bn=True, skipped_optimizers=["fuse_pad_into_conv"],
                                          overwrite_input_shapes={model.graph.input[0].name: [1, *declared[1:]]})
    except Exception:  # onnxsim raises what ONNX Runtime raises; the reader then names the op it cannot read
        return model
    model = simplified if ok else model
    _commute_maxpool_relu(model.graph)  # a file read without prepare()
    return model


def _commute_maxpool_relu(graph) -> list:
    """``Relu(MaxPool(x))`` -> ``MaxPool(Relu(x))`` where the MaxPool's only reader is the Relu; the
    MaxPool nodes moved."""
    nodes = list(graph.node)  # the graph's own messages, changed in place
    producers, order, moved = _producers(graph), list(range(len(nodes))), []
    position = {id(n): i for i, n in enumerate(nodes)}
    for relu in [n for n in nodes if n.op_type == "Relu"]:
        pool = producers.get(relu.input[0])
        if pool is None or pool.op_type != "MaxPool" or len(_readers(graph, pool.output[0])) != 1 \
                or (len(pool.output) > 1 and pool.output[1]):
            continue
        x, pooled, out = pool.input[0], pool.output[0], relu.output[0]
        relu.input[0], relu.output[0] = x, pooled
        pool.input[0], pool.output[0] = pooled, out
        producers[pooled], producers[out] = relu, pool
        i, j = order.index(position[id(pool)]), order.index(position[id(relu)])
        order[i], order[j] = order[j], order[i]
        moved.append(pool.name or out)
    if moved:
        reordered = [onnx.NodeProto.FromString(nodes[k].SerializeToString()) for k in order]
        del graph.node[:]
        graph.node.extend(reordered)
    return moved
