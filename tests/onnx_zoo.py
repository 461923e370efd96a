"""A zoo of small MNIST classifiers exported the way people export them (issue 33): torch's legacy exporter
(``torch.onnx.export(..., dynamo=False)``), tf2onnx from Keras 2.15, and graphs written with ``onnx.helper`` in the
patterns of exporters that do not install beside the pins: torch's dynamo exporter (it needs onnx-ir, which needs
ml-dtypes >= 0.5 where TensorFlow 2.15 pins 0.3), keras2onnx 1.5 and onnx-chainer.

Each model is trained briefly (fixed seeds, a fixed subset of MNIST training images) under its own preprocessing,
``x = (p * scale - mean) / std`` for a pixel ``p`` in 0..1, and says which patterns it covers and whether it should
convert. ``build_zoo(folder)`` writes them all; ``python tests/onnx_zoo.py [FOLDER]`` builds the zoo and prints each
model's accuracy in ONNX Runtime on the first 500 MNIST test images.
"""

import time
import warnings
from collections.abc import Callable
from functools import cache
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRAIN_IMAGES = 20_000
TORCH_LEGACY = "torch.onnx.export (legacy, dynamo=False)"
TF2ONNX = "tf2onnx.convert.from_keras (Keras 2.15)"


def preprocess(images: np.ndarray, layout: str, input_shape: tuple, scale: float = 1.0, mean=0.0, std=1.0):
    """Uint8 images (N, 28, 28) laid out as a model's input (``flat``, ``HW``, ``CHW`` or ``HWC``; a grey image
    repeated over the channels) and normalised as ``(p * scale - mean) / std`` (per channel where given per channel)."""
    p = images.astype(np.float32) / 255
    grey = {"flat": p.reshape(len(p), -1), "HW": p, "CHW": p[:, None], "HWC": p[..., None]}[layout]
    x = np.broadcast_to(grey, (len(p), *input_shape))
    channel = (-1, 1, 1) if layout == "CHW" else (-1,)
    mean, std = (np.reshape(np.asarray(v, np.float32), channel) for v in (mean, std))
    return ((x * np.float32(scale) - mean) / std).astype(np.float32)


def _option(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo: how it was made, what it takes and what a converter should do with it."""
    name: str
    exporter: str
    opset: int
    input_shape: tuple   # one image as the model takes it
    layout: str          # where the image lies in it: flat, HW, CHW or HWC
    batch: str           # "dynamic", "1" (a fixed batch of one) or "none" (the input is one image)
    patterns: tuple
    scale: float = 1.0
    mean: float | tuple = 0.0
    std: float | tuple = 1.0
    refusal_op: str | None = None   # the op a refusal must name; None: the model should convert
    shares: str = ""     # entries with the same key export one trained net (built together)
    build: Callable = field(default=None, repr=False, compare=False)
    path: Path | None = None

    @property
    def converts(self) -> bool:
        return self.refusal_op is None

    @property
    def group(self) -> str:
        """The entries built together: those sharing a trained net, else the entry alone."""
        return self.shares or self.name

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """MNIST uint8 images (N, 28, 28) as this model takes them, one per row: (N, *input_shape)."""
        return preprocess(images, self.layout, self.input_shape, self.scale, self.mean, self.std)

    def cli_options(self) -> list[str]:
        """Its preprocessing as snnbench's options (per-channel values comma-separated)."""
        return ["--input-scale", _option(self.scale), "--input-mean", _option(self.mean),
                "--input-std", _option(self.std)]


def ort_predictions(entry: ZooEntry, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The classes ONNX Runtime gives (argmax of the first output) for uint8 images under the entry's preprocessing."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warning for initializers listed as graph inputs: that is the pattern
    session = ort.InferenceSession(str(entry.path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = entry.inputs(images)
    if entry.batch == "dynamic":
        feeds = [x[a:a + batch_size] for a in range(0, len(x), batch_size)]
    else:  # one image a run, with its batch of one or as it is
        feeds = [x[i:i + 1] if entry.batch == "1" else x[i] for i in range(len(x))]
    outputs = [session.run(None, {name: feed})[0] for feed in feeds]
    return np.concatenate([out.reshape(-1, 10) for out in outputs]).argmax(1)


class _Training:
    """A fixed subset of MNIST training images, and the nets trained on them that two zoo entries share."""

    def __init__(self):
        from snnbench.data import load_mnist

        train = load_mnist("train")
        rows = np.random.default_rng(0).permutation(len(train.labels))[:TRAIN_IMAGES]
        self.images, self.labels = train.images[rows], train.labels[rows]
        self.shared = {}

    def once(self, key: str, train: Callable):
        if key not in self.shared:
            self.shared[key] = train()
        return self.shared[key]


@cache
def _training() -> _Training:
    """One per process: a worker that builds several groups reads the images once."""
    return _Training()


# --------------------------------------------------------------------------- torch nets

class _Classifier(nn.Module):
    """Trained on ``logits`` (a batch), exported as ``forward``."""

    def forward(self, x):
        return self.logits(x)


class _Headed(_Classifier):
    def __init__(self, body: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.body, self.head = body, head or nn.Identity()

    def logits(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


class _Lambda(nn.Module):
    def __init__(self, function: Callable):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class _ExampleCnn(_Classifier):
    """The shape of PyTorch's old MNIST example: MaxPool before Relu, ``x.view(x.size(0), -1)``, LogSoftmax."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 5), nn.Conv2d(8, 16, 5)
        self.fc1, self.fc2 = nn.Linear(256, 64), nn.Linear(64, 10)

    def logits(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))

    def forward(self, x):
        return F.log_softmax(self.logits(x), dim=1)


class _MlpWithHidden(_Classifier):
    """Returns its softmax and its hidden layer."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 128), nn.Linear(128, 10)

    def hidden_and_logits(self, x):
        hidden = F.relu(self.fc1(x.view(x.size(0), -1)))
        return hidden, self.fc2(hidden)

    def logits(self, x):
        return self.hidden_and_logits(x)[1]

    def forward(self, x):
        hidden, logits = self.hidden_and_logits(x)
        return F.softmax(logits, dim=1), hidden


class _UnbatchedCnn(_Classifier):
    """Takes one image (1, 28, 28) and gives (10,) probabilities. torch exports an unbatched Conv between Unsqueeze
    and Squeeze; the pools get them by hand, as torch writes an unbatched max_pool2d that ONNX Runtime rejects."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3), nn.Linear(16 * 5 * 5, 10)

    @staticmethod
    def pool(h):
        return F.max_pool2d(h, 2) if h.dim() == 4 else F.max_pool2d(h.unsqueeze(0), 2).squeeze(0)

    def logits(self, x):
        h = self.pool(F.relu(self.conv1(x)))
        h = self.pool(F.relu(self.conv2(h)))
        return self.fc(h.flatten(-3))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=0)


class _TransposedWeightsMlp(_Classifier):
    """Weights kept as (out, in) and transposed in ``forward``: ``x @ w.t() + b``."""

    def __init__(self):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(128, 784) / 28), nn.Parameter(torch.zeros(128))
        self.w2, self.b2 = nn.Parameter(torch.randn(10, 128) / 128 ** 0.5), nn.Parameter(torch.zeros(10))

    def logits(self, x):
        return F.relu(x @ self.w1.t() + self.b1) @ self.w2.t() + self.b2


class _RowGru(_Classifier):
    """Reads the image row by row."""

    def __init__(self):
        super().__init__()
        self.gru, self.fc = nn.GRU(28, 64, batch_first=True), nn.Linear(64, 10)

    def logits(self, x):
        return self.fc(self.gru(x)[1][-1])


def _fit(make_net: Callable, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 2e-3, seed: int = 0):
    torch.manual_seed(seed)
    net = make_net()
    optimizer = torch.optim.Adam(net.parameters(), lr)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            rows = order[start:start + 64]
            optimizer.zero_grad()
            F.cross_entropy(net.logits(x[rows]), y[rows]).backward()
            optimizer.step()
    return net.eval()


def _torch_export(net: nn.Module, entry: ZooEntry, path: Path, outputs=("output",), **options):
    example = torch.zeros(entry.input_shape if entry.batch == "none" else (1, *entry.input_shape))
    dynamic = {name: {0: "batch"} for name in ("input", *outputs)} if entry.batch == "dynamic" else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings: used on purpose
        torch.onnx.export(net, example, str(path), dynamo=False, opset_version=entry.opset, input_names=["input"],
                          output_names=list(outputs), dynamic_axes=dynamic, **options)


def _torch_model(make_net: Callable, epochs: int, lr: float = 2e-3, outputs=("output",), **options):
    """A builder: the net trained under the entry's preprocessing, exported by torch's legacy exporter."""
    def build(entry: ZooEntry, training: _Training, path: Path):
        net = _fit(make_net, entry.inputs(training.images), training.labels, epochs, lr)
        _torch_export(net, entry, path, outputs, **options)
    return build


def _example_cnn(training: _Training) -> _ExampleCnn:
    """The example CNN under (x - 0.1307) / 0.3081, shared by its legacy and its dynamo-pattern exports."""
    x = preprocess(training.images, "CHW", (1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD)
    return training.once("example-cnn", lambda: _fit(_ExampleCnn, x, training.labels, epochs=2))


def _build_example_cnn(entry: ZooEntry, training: _Training, path: Path):
    _torch_export(_example_cnn(training), entry, path)


# --------------------------------------------------------------------------- Keras nets through tf2onnx

def _keras_cnn_layers():
    from tensorflow import keras

    return [keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")]


def _keras_mlp_layers():
    from tensorflow import keras

    return [keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax")]


def _keras_rescaling_mlp_layers():
    from tensorflow import keras

    return [keras.layers.Rescaling(1 / 255), *_keras_mlp_layers()]


def _keras_fit(layers: Callable, entry: ZooEntry, training: _Training, epochs: int):
    from tensorflow import keras

    keras.backend.clear_session()  # layer names from 1 again
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(entry.input_shape), *layers()])
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(entry.inputs(training.images), training.labels, batch_size=64, epochs=epochs, verbose=0)
    return model


def _keras_model(layers: Callable, epochs: int):
    """A builder: a Keras Sequential model trained under the entry's preprocessing, converted by tf2onnx."""
    def build(entry: ZooEntry, training: _Training, path: Path):
        _tf2onnx(_keras_fit(layers, entry, training, epochs), entry, path)
    return build


def _tf2onnx(model, entry: ZooEntry, path: Path):
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *entry.input_shape), tf.float32, name="input")]
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=entry.opset, output_path=str(path))


def _keras_cnn(entry: ZooEntry, training: _Training):
    """The Keras CNN, shared by its tf2onnx and its keras2onnx-pattern exports (entries of the same input and
    preprocessing: trained under whichever comes first)."""
    return training.once("keras-cnn", lambda: _keras_fit(_keras_cnn_layers, entry, training, epochs=2))


def _build_keras_cnn(entry: ZooEntry, training: _Training, path: Path):
    _tf2onnx(_keras_cnn(entry, training), entry, path)


# --------------------------------------------------------------------------- graphs written by hand

def _save_graph(entry: ZooEntry, path: Path, nodes: list, input_name: str, input_shape: list, outputs: list,
                arrays: dict, producer: tuple):
    graph = helper.make_graph(
        nodes, entry.name, [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
        [numpy_helper.from_array(np.asarray(value, np.float32 if value.dtype.kind == "f" else np.int64), name)
         for name, value in arrays.items()])
    opsets = [helper.make_opsetid("", entry.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=producer[0], producer_version=producer[1],
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.save(model, str(path))


def _torch_arrays(net: nn.Module) -> dict:
    return {name: value.detach().numpy() for name, value in net.state_dict().items()}


def _build_dynamo_cnn(entry: ZooEntry, training: _Training, path: Path):
    """The example CNN as torch's dynamo exporter (2.6 to 2.9) writes it, with the normalisation moved into the
    graph: Constant value_float, Shape(start=0, end=1) -> Concat -> Reshape(allowzero=1), Gemm(transB=1)."""
    conv = {"dilations": [1, 1], "group": 1, "pads": [0, 0, 0, 0], "strides": [1, 1]}
    pool = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "dilations": [1, 1], "ceil_mode": 0}
    node = helper.make_node
    nodes = [
        node("Constant", [], ["val_0"], "node_Constant_0", value_float=MNIST_MEAN),
        node("Sub", ["x", "val_0"], ["sub"], "node_sub"),
        node("Constant", [], ["val_1"], "node_Constant_1", value_float=MNIST_STD),
        node("Div", ["sub", "val_1"], ["div"], "node_div"),
        node("Conv", ["div", "conv1.weight", "conv1.bias"], ["conv2d"], "node_conv2d", **conv),
        node("MaxPool", ["conv2d"], ["max_pool2d"], "node_max_pool2d", **pool),
        node("Relu", ["max_pool2d"], ["relu"], "node_relu"),
        node("Conv", ["relu", "conv2.weight", "conv2.bias"], ["conv2d_1"], "node_conv2d_1", **conv),
        node("MaxPool", ["conv2d_1"], ["max_pool2d_1"], "node_max_pool2d_1", **pool),
        node("Relu", ["max_pool2d_1"], ["relu_1"], "node_relu_1"),
        node("Shape", ["relu_1"], ["val_2"], "node_Shape_0", start=0, end=1),
        node("Constant", [], ["val_3"], "node_Constant_2", value_ints=[-1]),
        node("Concat", ["val_2", "val_3"], ["val_4"], "node_Concat_0", axis=0),
        node("Reshape", ["relu_1", "val_4"], ["view"], "node_view", allowzero=1),
        node("Gemm", ["view", "fc1.weight", "fc1.bias"], ["linear"], "node_linear", transB=1),
        node("Relu", ["linear"], ["relu_2"], "node_relu_2"),
        node("Gemm", ["relu_2", "fc2.weight", "fc2.bias"], ["linear_1"], "node_linear_1", transB=1),
        node("LogSoftmax", ["linear_1"], ["log_softmax"], "node_log_softmax", axis=1)]
    _save_graph(entry, path, nodes, "x", ["s0", 1, 28, 28], [("log_softmax", ["s0", 10])],
                _torch_arrays(_example_cnn(training)), ("pytorch", "2.9.0"))


def _build_keras2onnx_cnn(entry: ZooEntry, training: _Training, path: Path):
    """The Keras CNN as keras2onnx 1.5 wrote it: the NHWC input transposed to NCHW for the convs and pools and
    back before Flatten (a Reshape), each Dense as MatMul + Add, the Softmax head, and the nodes out of topological
    order (ONNX Runtime sorts them)."""
    from tensorflow import keras

    node, arrays, h = helper.make_node, {}, "conv2d_input"
    nodes = [node("Transpose", [h], ["adjusted_input"], "conv2d_input_transpose", perm=[0, 3, 1, 2])]
    h = "adjusted_input"
    for layer in _keras_cnn(entry, training).layers:
        name = layer.name
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            arrays[f"{name}/kernel:0"], arrays[f"{name}/bias:0"] = kernel.transpose(3, 2, 0, 1), bias
            nodes.append(node("Conv", [h, f"{name}/kernel:0", f"{name}/bias:0"], [f"{name}/BiasAdd:0"], name,
                              kernel_shape=list(layer.kernel_size), auto_pad="VALID"))
            h = f"{name}/BiasAdd:0"
        elif isinstance(layer, keras.layers.MaxPooling2D):
            nodes.append(node("MaxPool", [h], [f"{name}/MaxPool:0"], name, kernel_shape=list(layer.pool_size),
                              strides=list(layer.strides), auto_pad="VALID"))
            h = f"{name}/MaxPool:0"
        elif isinstance(layer, keras.layers.Flatten):
            arrays[f"{name}/shape:0"] = np.array([-1, layer.output_shape[-1]])
            nodes += [node("Transpose", [h], [f"{name}/nhwc:0"], f"{name}_transpose", perm=[0, 2, 3, 1]),
                      node("Reshape", [f"{name}/nhwc:0", f"{name}/shape:0"], [f"{name}/Reshape:0"], name)]
            h = f"{name}/Reshape:0"
        else:
            arrays[f"{name}/kernel:0"], arrays[f"{name}/bias:0"] = layer.get_weights()
            nodes += [node("MatMul", [h, f"{name}/kernel:0"], [f"{name}/MatMul:0"], name),
                      node("Add", [f"{name}/MatMul:0", f"{name}/bias:0"], [f"{name}/BiasAdd:0"], f"{name}_add")]
            h = f"{name}/BiasAdd:0"
        activation = getattr(layer, "activation", None)
        if activation is keras.activations.relu:
            nodes.append(node("Relu", [h], [f"{name}/Relu:0"], f"{name}_relu"))
            h = f"{name}/Relu:0"
        elif activation is keras.activations.softmax:
            nodes.append(node("Softmax", [h], ["output"], f"{name}_softmax", axis=1))
    unsorted = [nodes[i] for i in np.random.default_rng(0).permutation(len(nodes))]
    _save_graph(entry, path, unsorted, "conv2d_input", ["N", *entry.input_shape], [("output", ["N", 10])], arrays,
                ("keras2onnx", "1.5.1"))


def _chainer_net():
    return _Headed(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10)))


def _build_chainer_cnn(entry: ZooEntry, training: _Training, path: Path):
    """A CNN as onnx-chainer writes it: a batch of 1 fixed by the example input, F.max_pooling_2d's cover_all as
    asymmetric MaxPool pads [0, 0, 1, 1] (a 3x3 window, stride 2: 28 -> 14 -> 7), Reshape to a constant shape and
    Gemm(transB=1). Trained in torch, where a ceil_mode pool takes the same windows."""
    net = _fit(_chainer_net, entry.inputs(training.images), training.labels, epochs=3)
    node, arrays, nodes, h = helper.make_node, {}, [], "Input_0"
    count = {}
    for module in net.body:
        kind = {nn.Conv2d: "Convolution2DFunction", nn.ReLU: "ReLU", nn.MaxPool2d: "MaxPooling2D",
                nn.Flatten: "Reshape", nn.Linear: "LinearFunction"}[type(module)]
        name = f"{kind}_{count.setdefault(kind, 0)}"
        count[kind] += 1
        inputs = [h]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            arrays[f"param_{name}_W"], arrays[f"param_{name}_b"] = module.weight.detach().numpy(), \
                module.bias.detach().numpy()
            inputs += [f"param_{name}_W", f"param_{name}_b"]
        if isinstance(module, nn.Conv2d):
            nodes.append(node("Conv", inputs, [name], name, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1],
                              dilations=[1, 1], group=1))
        elif isinstance(module, nn.MaxPool2d):
            nodes.append(node("MaxPool", inputs, [name], name, kernel_shape=[3, 3], pads=[0, 0, 1, 1], strides=[2, 2]))
        elif isinstance(module, nn.Flatten):
            arrays[f"{name}_shape"] = np.array([1, 16 * 7 * 7])
            nodes.append(node("Reshape", [h, f"{name}_shape"], [name], name))
        elif isinstance(module, nn.Linear):
            nodes.append(node("Gemm", inputs, [name], name, alpha=1.0, beta=1.0, transA=0, transB=1))
        else:
            nodes.append(node("Relu", inputs, [name], name))
        h = name
    _save_graph(entry, path, nodes, "Input_0", [1, *entry.input_shape], [(h, [1, 10])], arrays, ("Chainer", "7.8.1"))


# --------------------------------------------------------------------------- the zoo

SHAPE_ARITHMETIC = "x.view(x.size(0), -1) with a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat -> Reshape"

ZOO = (
    ZooEntry("torch_example_cnn", TORCH_LEGACY, 11, (1, 28, 28), "CHW", "dynamic",
             (SHAPE_ARITHMETIC, "LogSoftmax head", "MaxPool before Relu", "(x - 0.1307) / 0.3081"),
             mean=MNIST_MEAN, std=MNIST_STD, shares="example-cnn", build=_build_example_cnn),
    ZooEntry("torch_mlp_two_outputs", TORCH_LEGACY, 13, (1, 28, 28), "CHW", "dynamic",
             (SHAPE_ARITHMETIC, "Softmax head", "a second graph output (the hidden layer)", "0..1"),
             build=_torch_model(_MlpWithHidden, epochs=5, outputs=("probabilities", "hidden"))),
    ZooEntry("torch_mlp_bn_sigmoid_batch1_raw", TORCH_LEGACY, 10, (784,), "flat", "1",
             ("Sigmoid head", "a fixed batch of 1 (no dynamic_axes)", "BatchNorm1d after a Linear",
              "raw 0..255 pixels"), scale=255.0,
             build=_torch_model(lambda: _Headed(nn.Sequential(
                 nn.Linear(784, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10)), nn.Sigmoid()), epochs=5)),
    ZooEntry("torch_cnn_nhw_padded_pool", TORCH_LEGACY, 12, (28, 28), "HW", "dynamic",
             ("(N, 28, 28) input unsqueezed inside the model", "MaxPool padding=1", "Flatten", "(x - 0.5) / 0.5"),
             mean=0.5, std=0.5,
             build=_torch_model(lambda: _Headed(nn.Sequential(
                 _Lambda(lambda x: x.unsqueeze(1)), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                 nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))),
                 epochs=2)),
    ZooEntry("torch_bn_cnn_grey_as_rgb", TORCH_LEGACY, 16, (3, 28, 28), "CHW", "dynamic",
             ("grey images fed as 3 channels", "a small BN CNN (BN folded into Conv)", "MaxPool ceil_mode=True",
              "per-channel ImageNet mean and std"), mean=IMAGENET_MEAN, std=IMAGENET_STD,
             build=_torch_model(lambda: _Headed(nn.Sequential(
                 nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                 nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                 nn.Linear(16 * 6 * 6, 10))), epochs=2)),
    ZooEntry("torch_unbatched_cnn_softmax_dim0", TORCH_LEGACY, 14, (1, 28, 28), "CHW", "none",
             ("an unbatched (1, 28, 28) input with a (10,) output", "Softmax(dim=0)",
              "Unsqueeze/Squeeze around the conv and the pool", "0..1"),
             build=_torch_model(_UnbatchedCnn, epochs=2)),
    ZooEntry("torch_bn_cnn_sigmoid_input", TORCH_LEGACY, 15, (1, 28, 28), "CHW", "dynamic",
             ("Sigmoid applied to the raw input before the first layer", "a small BN CNN (BN folded into Conv)",
              "raw 0..255 pixels"), scale=255.0,
             build=_torch_model(lambda: _Headed(nn.Sequential(
                 nn.Sigmoid(), nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                 nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                 nn.Linear(16 * 5 * 5, 10))), epochs=2)),
    ZooEntry("torch_cnn_subdiv_two_linear", TORCH_LEGACY, 17, (1, 28, 28), "CHW", "dynamic",
             ("(x - 0.5) / 0.5 inside the graph (Sub/Div)", "two Linear layers with no activation between them",
              "0..1"),
             build=_torch_model(lambda: _Headed(nn.Sequential(
                 _Lambda(lambda x: (x - 0.5) / 0.5), nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
                 nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 64),
                 nn.Linear(64, 10))), epochs=2)),
    ZooEntry("torch_mlp_runtime_transpose", TORCH_LEGACY, 9, (784,), "flat", "dynamic",
             ("weights transposed at run time (x @ w.t(), do_constant_folding=False)",
              "keep_initializers_as_inputs=True", "(x - 0.1307) / 0.3081"), mean=MNIST_MEAN, std=MNIST_STD,
             build=_torch_model(_TransposedWeightsMlp, epochs=5, do_constant_folding=False,
                                keep_initializers_as_inputs=True)),
    ZooEntry("keras_cnn_nhwc", TF2ONNX, 13, (28, 28, 1), "HWC", "dynamic",
             ("Sequential CNN with NHWC input (28, 28, 1)", "Softmax head", "0..1"), shares="keras-cnn",
             build=_build_keras_cnn),
    ZooEntry("keras_mlp_hw", TF2ONNX, 15, (28, 28), "HW", "dynamic",
             ("MLP with a (28, 28) input and Flatten", "Softmax head", "0..1"),
             build=_keras_model(_keras_mlp_layers, epochs=4)),
    ZooEntry("keras_rescaling_raw", TF2ONNX, 17, (28, 28, 1), "HWC", "dynamic",
             ("a Rescaling(1/255) layer", "Softmax head", "raw 0..255 pixels"), scale=255.0,
             build=_keras_model(_keras_rescaling_mlp_layers, epochs=4)),
    ZooEntry("dynamo_example_cnn", "onnx.helper in torch dynamo exporter patterns (2.6-2.9)", 18, (1, 28, 28), "CHW",
             "dynamic", ("Shape(start=0, end=1) -> Concat -> Reshape(allowzero=1)", "Constant value_ints",
                         "Constant value_float", "(x - 0.1307) / 0.3081 inside the graph", "LogSoftmax head",
                         "MaxPool before Relu", "0..1"), shares="example-cnn", build=_build_dynamo_cnn),
    ZooEntry("keras2onnx_cnn_unsorted", "onnx.helper in keras2onnx 1.5 patterns", 9, (28, 28, 1), "HWC", "dynamic",
             ("nodes out of topological order", "NHWC input transposed around the conv and pool", "Softmax head",
              "0..1"), shares="keras-cnn", build=_build_keras2onnx_cnn),
    ZooEntry("chainer_cnn_asymmetric_pool", "onnx.helper in onnx-chainer patterns", 9, (1, 28, 28), "CHW", "1",
             ("MaxPool pads [0, 0, 1, 1]", "a fixed batch of 1", "Reshape to a constant shape", "0..1"),
             build=_build_chainer_cnn),
    ZooEntry("torch_mlp_hidden_tanh", TORCH_LEGACY, 13, (1, 28, 28), "CHW", "dynamic", ("a hidden Tanh", "0..1"),
             refusal_op="Tanh",
             build=_torch_model(lambda: _Headed(nn.Sequential(
                 nn.Flatten(), nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 10))), epochs=5)),
    ZooEntry("torch_row_gru", TORCH_LEGACY, 14, (28, 28), "HW", "dynamic", ("a GRU over the image rows", "0..1"),
             refusal_op="GRU", build=_torch_model(_RowGru, epochs=2, lr=5e-3)),
)


GROUPS = tuple(dict.fromkeys(entry.group for entry in ZOO))


def zoo_in(folder, groups=GROUPS) -> list[ZooEntry]:
    """The entries of ``groups`` (default: all) with their paths in ``folder`` (``NAME.onnx``)."""
    return [replace(entry, path=Path(folder) / f"{entry.name}.onnx") for entry in ZOO if entry.group in groups]


def build_zoo(folder, groups=GROUPS) -> list[ZooEntry]:
    """Train and export the models of ``groups`` (default: all) into ``folder`` (``NAME.onnx``); the entries
    with their paths. A group gets the same weights built alone as with the others (fixed seeds)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    training, threads = _training(), torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is about as fast, and far faster on a busy machine
    try:
        for entry in zoo_in(folder, groups):
            entry.build(entry, training, entry.path)
    finally:
        torch.set_num_threads(threads)
    return zoo_in(folder, groups)


def main(argv: list[str]) -> None:
    """Build the zoo (into ``argv[0]`` or a temporary folder) and print each model's ORT test accuracy."""
    import tempfile

    from snnbench.data import load_mnist

    folder = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="onnx-zoo-"))
    wall, cpu = time.perf_counter(), time.process_time()
    entries = build_zoo(folder)
    print(f"built {len(entries)} models into {folder} in {time.perf_counter() - wall:.1f} s "
          f"({time.process_time() - cpu:.1f} s of CPU)")
    test = load_mnist("test")
    images, labels = test.images[:500], test.labels[:500]
    for entry in entries:
        accuracy = (ort_predictions(entry, images) == labels).mean()
        print(f"{entry.name:34s} opset {entry.opset:2d}  ORT accuracy {100 * accuracy:5.1f}%  "
              f"{'converts' if entry.converts else 'refused at ' + entry.refusal_op}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
