"""Gaussian noise inside an ONNX graph, so a noisy DNN is still run by ONNX Runtime.

:func:`add_noise` copies the graph with one ``Add`` per noisy tensor, the noise as extra graph inputs
(``noise_input``, ``noise_layer0``, ...): ``input`` adds to the network input, ``pre`` / ``post`` to
hidden layer ``i``'s activation input / output, layer ``i`` being the ``i``-th activation node in graph
order (:func:`hidden_activations`). :meth:`NoisyGraph.feeds` draws a :class:`~snnbench.noise.NoiseSpec`
with the layer keys every family shares ("input", "layer0", ...), so the DNN gets the very draws a
spiking network gets at step 0.
"""

from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from snnbench.errors import ConfigError, DataError, UnsupportedModelError
from snnbench.conversion.onnx_graph import node_name
from snnbench.models.export import onnx_file
from snnbench.noise import NoiseSpec

ACTIVATIONS = ("Relu",)
NOISY_POSITIONS = ("input", "pre", "post")


@dataclass(frozen=True)
class NoiseInput:
    """One extra graph input: its name, the NoiseSpec layer key and the per-sample shape."""
    name: str
    layer: str
    shape: tuple


@dataclass
class NoisyGraph:
    model: onnx.ModelProto
    position: str
    inputs: tuple

    def feeds(self, spec: NoiseSpec) -> Callable[[int, int], dict]:
        """``feeds(start, n)`` -> the noise inputs for samples ``start .. start + n`` (zeros when
        ``spec`` does not apply to this graph's position)."""
        if spec.active and spec.position != self.position:
            raise ConfigError(f"noise at {spec.position!r} cannot be fed to a graph with noise inputs at "
                              f"{self.position!r}; build it with add_noise(model, {spec.position!r})")

        def feeds(start: int, n: int) -> dict:
            return {i.name: spec.draw(i.layer, start, n, int(np.prod(i.shape))).reshape(n, *i.shape)
                    for i in self.inputs}
        return feeds

    def serialized(self) -> bytes:
        return self.model.SerializeToString()


def _load(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = onnx_file(model)
    if not path.exists():
        raise DataError(f"no ONNX model at {path}; export one first (snnbench.models.export.export_onnx)")
    return onnx.load(str(path))


def hidden_activations(model) -> list:
    """Hidden layer ``i`` of a graph for every engine: its ``i``-th activation node in graph order (where
    ONNX Runtime adds the noise of ``layer{i}`` and reads the activity)."""
    return [node for node in _load(model).graph.node if node.op_type in ACTIVATIONS]


def check_hidden_layers(converted, model=None) -> None:
    """Stop unless the hidden stages of ``converted`` that take noise (all but the populations of
    MaxPool's exact route) are, in order, the activation nodes of its ONNX graph (``model``; default
    its ``source`` if an .onnx file, else nothing to check), so that the noise of ``layer{i}`` lands
    on the same layer in Nengo as in ONNX Runtime. They differ where a Clip is a layer of its own or
    a Relu repeats one."""
    if model is None:
        source = Path(str(converted.source))
        if source.suffix != ".onnx" or not source.is_file():
            return
        model = source
    nodes = [node_name(node) for node in hidden_activations(model)]
    stages = [stage.name for stage in converted.noise_layers().values()]
    if stages != nodes:
        i, (stage, node) = next((i, p) for i, p in enumerate(zip_longest(stages, nodes)) if p[0] != p[1])
        raise UnsupportedModelError(
            f"noise at a hidden layer is keyed by layer, but layer {i} is population {stage!r} "
            f"of the converted network and activation node {node!r} of the ONNX graph "
            f"({len(stages)} populations, {len(nodes)} {'/'.join(ACTIVATIONS)} nodes: a Clip or a repeated Relu); "
            "use noise at 'input'")


def _inferred(model: onnx.ModelProto) -> dict:
    graph = shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        shapes[value.name] = (tensor.elem_type, dims)
    return shapes


def _shapes(model: onnx.ModelProto) -> dict:
    """Tensor name -> (elem_type, dims) for every tensor whose shape inference knows; where a dynamic
    batch leaves a hidden tensor's shape unknown, its shape in the graph at batch 1."""
    shapes = _inferred(model)
    if all(len(dims) >= 2 and None not in dims[1:] for _, dims in shapes.values()):
        return shapes
    from snnbench.conversion.onnx_prepare import fixed_batch

    at_one = _inferred(fixed_batch(onnx.ModelProto.FromString(model.SerializeToString())))
    for name, (elem_type, dims) in at_one.items():
        known = shapes.get(name, (elem_type, ()))[1]
        if dims and dims[0] == 1 and (len(known) < 2 or None in known[1:]):
            shapes[name] = (elem_type, (None, *dims[1:]))
    return shapes


def _sample_shape(shapes: dict, tensor: str, what: str) -> tuple:
    elem_type, dims = shapes.get(tensor, (None, ()))
    if elem_type != TensorProto.FLOAT or len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
        raise UnsupportedModelError(f"cannot add noise at {what}: tensor {tensor!r} needs a float32 shape "
                                    f"[batch, features...] with known feature sizes (got {dims or 'unknown'}); "
                                    "export the model with a fixed feature size (snnbench.models.export.export_onnx)")
    return tuple(dims[1:])


def add_noise(model, position: str) -> NoisyGraph:
    """A copy of ``model`` (ModelProto, .onnx path or folder holding model.onnx) with noise inputs
    at ``position`` ('input', 'pre' or 'post'); the original is left untouched."""
    if position not in NOISY_POSITIONS:
        raise ConfigError(f"cannot add noise at {position!r}; use one of {', '.join(NOISY_POSITIONS)}")
    model = onnx.ModelProto.FromString(_load(model).SerializeToString())
    graph = model.graph
    shapes = _shapes(model)
    nodes, noise_inputs = list(graph.node), []
    if position == "input":
        data = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        if len(data) != 1:
            raise UnsupportedModelError(f"noise at 'input' needs a graph with one data input, found {len(data)}")
        name = data[0].name
        noise_inputs.append(NoiseInput("noise_input", "input", _sample_shape(shapes, name, "the input")))
        for node in nodes:
            node.input[:] = [f"{name}_noisy" if t == name else t for t in node.input]
        nodes.insert(0, helper.make_node("Add", [name, "noise_input"], [f"{name}_noisy"], name="add_noise_input"))
    else:
        activations = hidden_activations(model)
        if not activations:
            raise UnsupportedModelError(f"cannot add noise at {position!r}: the ONNX graph has no activation node "
                                        f"({', '.join(ACTIVATIONS)}) to attach it to; use position 'input'")
        for i, node in enumerate(activations):
            tensor = node.input[0] if position == "pre" else node.output[0]
            noise = NoiseInput(f"noise_layer{i}", f"layer{i}", _sample_shape(shapes, tensor, f"layer {i}"))
            here = nodes.index(node)
            if position == "pre":  # the activation reads tensor_noisy = tensor + noise
                node.input[0] = f"{tensor}_noisy"
                add = helper.make_node("Add", [tensor, noise.name], [node.input[0]], name=f"add_noise_layer{i}")
            else:  # the activation writes tensor_clean, and tensor = tensor_clean + noise
                node.output[0] = f"{tensor}_clean"
                add = helper.make_node("Add", [node.output[0], noise.name], [tensor], name=f"add_noise_layer{i}")
                here += 1
            nodes.insert(here, add)
            noise_inputs.append(noise)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.extend(helper.make_tensor_value_info(n.name, TensorProto.FLOAT, ["batch", *n.shape])
                       for n in noise_inputs)
    onnx.checker.check_model(model)
    return NoisyGraph(model, position, tuple(noise_inputs))
