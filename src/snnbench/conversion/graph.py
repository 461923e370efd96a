"""A converted classifier as populations (stages) and the linear paths between them.

A :class:`ConvertedModel` is a DAG of stages: ReLU populations (a ``Clip(0, a)`` layer is a ReLU
bounded at ``upper``), then the logits. A stage's input is the sum of its paths plus one bias (every
bias and constant of the graph pushed through to it); a path takes a source (the input or an earlier
stage) through a chain of linear ops on flat C-major vectors. A chain has one path per stage; a
residual Add gives several (an identity skip has no ops), a Concat places its inputs along the
channels. Paths that share an op after a sum share the op object, so it can be applied once.
"""

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from snnbench.errors import UnsupportedModelError

INPUT = -1  # the source index of the model input
MAX_HELPER = "{node}/max{k}"  # the name of a MaxPool's exact route's k-th population (relu(a - b) of a pair)


def same_pads(size: tuple, kernel: tuple, strides: tuple) -> tuple:
    """(top, left, bottom, right) of TensorFlow's / Nengo's "same" padding (the odd pixel after)."""
    totals = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides)]
    return (totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2, totals[1] - totals[1] // 2)


def conv_out_len(n: int, k: int, s: int, before: int, after: int) -> int:
    return (n + before + after - k) // s + 1


@dataclass(eq=False)  # compared by identity: a shared op is one op
class LinearOp:
    """One linear op on flat (C-major) feature vectors."""
    kind: str                       # "dense" | "conv" | "avgpool" | "select" | "place" | "pad"
    in_shape: tuple                 # (n,) for dense, (C, H, W) otherwise
    out_shape: tuple
    weight: np.ndarray | None = None  # dense (out, in); conv (out_c, in_c / groups, kh, kw)
    bias: np.ndarray | None = None    # the graph's bias of this op (dense, conv); also part of Stage.bias
    kernel: tuple = ()              # conv / pooling window (conv: the kernel's own size, undilated)
    strides: tuple = (1, 1)
    padding: str = "valid"          # conv: "valid" (no pads), "same" (TF's same pads) or "explicit"
    offset: tuple = ()              # select: (row, col) within the window; place: (first channel,)
    index: np.ndarray | None = None  # select: the flat input index of each output, given (a permutation)
    pads: tuple = ()                # conv, pad: zero padding (top, left, bottom, right); conv: from padding if ()
    groups: int = 1                 # conv
    dilations: tuple = (1, 1)       # conv

    def __post_init__(self):
        if self.kind != "conv":
            return
        self.kernel, self.strides, self.dilations = (tuple(int(v) for v in t)
                                                     for t in (self.kernel, self.strides, self.dilations))
        same = same_pads(self.in_shape[1:], self.dilated_kernel, self.strides)
        if not self.pads:
            if self.padding not in ("valid", "same"):
                raise UnsupportedModelError(f"conv padding {self.padding!r} needs its pads (top, left, bottom, right)")
            self.pads = (0, 0, 0, 0) if self.padding == "valid" else same
        self.pads = tuple(int(p) for p in self.pads)
        self.padding = "valid" if not any(self.pads) else "same" if self.pads == same else "explicit"

    @property
    def size_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def size_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def dilated_kernel(self) -> tuple:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    @property
    def padded_shape(self) -> tuple:
        """conv: the input's shape once zero-padded."""
        top, left, bottom, right = self.pads
        c, h, w = self.in_shape
        return (c, h + top + bottom, w + left + right)

    def full_kernel(self) -> np.ndarray:
        """conv: the kernel as one dense (out, in, kh, kw) array, groups and dilation spelled out
        with zeros (for simulators that take neither)."""
        out_c, in_per_group = self.weight.shape[:2]
        d = self.dilations
        kernel = np.zeros((out_c, self.in_shape[0], *self.dilated_kernel), self.weight.dtype)
        per_group = out_c // self.groups
        for o in range(out_c):
            first = (o // per_group) * in_per_group
            kernel[o, first: first + in_per_group, ::d[0], ::d[1]] = self.weight[o]
        return kernel

    def indices(self) -> np.ndarray:
        """select: for each output, the flat index of the input element it copies."""
        if self.index is not None:
            return np.asarray(self.index)
        (dr, dc), (sr, sc) = self.offset, self.strides
        _, rows, cols = self.out_shape
        grid = np.arange(self.size_in).reshape(self.in_shape)
        return grid[:, dr::sr, dc::sc][:, :rows, :cols].reshape(-1)

    def pad_indices(self) -> np.ndarray:
        """conv, pad: for each input element, its flat index in the padded input."""
        top, left = self.pads[:2]
        c, h, w = self.in_shape
        grid = np.arange(int(np.prod(self.padded_shape))).reshape(self.padded_shape)
        return grid[:, top: top + h, left: left + w].reshape(-1)

    @property
    def place_start(self) -> int:
        """place: flat index where the input starts in the output."""
        return int(self.offset[0] * np.prod(self.out_shape[1:]))

    def apply(self, x: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
        """Apply to a batch of flat vectors ``(n, size_in)`` (float64 tensors)."""
        n = x.shape[0]
        if self.kind == "select":
            return x[:, torch.as_tensor(self.indices())]
        if self.kind == "place":
            out = x.new_zeros(n, self.size_out)
            out[:, self.place_start: self.place_start + self.size_in] = x
            return out
        w = None if self.weight is None else torch.as_tensor(self.weight, dtype=x.dtype)
        b = torch.as_tensor(self.bias, dtype=x.dtype) if with_bias and self.bias is not None else None
        if self.kind == "dense":
            return F.linear(x, w, b)
        image = x.reshape(n, *self.in_shape)
        if self.kind == "avgpool":
            return F.avg_pool2d(image, self.kernel, self.strides).reshape(n, -1)
        top, left, bottom, right = self.pads  # conv, pad
        image = F.pad(image, (left, right, top, bottom))
        if self.kind == "conv":
            image = F.conv2d(image, w, b, stride=self.strides, dilation=self.dilations, groups=self.groups)
        return image.reshape(n, -1)

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (dense and conv only, as NeuroBench counts)."""
        if self.kind == "dense":
            return int(self.weight.size)
        if self.kind == "conv":
            return int(self.size_out * np.prod(self.weight.shape[1:]))
        return 0


@dataclass
class LinearPath:
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
            shorter = LinearPath(path.source, path.ops[:-1], path.scale)
            groups.setdefault(id(path.ops[-1]), (path.ops[-1], []))[1].append(shorter)
        else:
            total = total + path.scale * value(path.source)
    for op, inner in groups.values():
        total = total + apply(op, sum_paths(inner, value, apply))
    return total


@dataclass(eq=False)
class Stage:
    """One population: ReLU of (sum of its paths + bias), bounded at ``upper`` for a Clip layer;
    or, for the last stage, the logits."""
    paths: list
    bias: np.ndarray                # (size_out,) float64
    activation: bool
    shape: tuple                    # (C, H, W) or (n,)
    name: str = ""                  # the ONNX node (Relu, Clip, MaxPool/max<k>, or the graph output)
    index: int = -1                 # position in ConvertedModel.stages (set by the model)
    upper: float | None = None      # Clip(0, upper): the activation's bound (None: a plain ReLU)

    @property
    def size_out(self) -> int:
        return int(np.prod(self.shape))

    @property
    def channels(self) -> int:
        """Output channels (C of (C, H, W)); every neuron of a flat stage is a channel of its own."""
        return int(self.shape[0])

    @property
    def sources(self) -> list:
        return sorted({p.source for p in self.paths})

    @property
    def max_helper(self) -> bool:
        """A population of a MaxPool's exact route (no layer of the ONNX graph)."""
        node, _, k = self.name.rpartition("/max")
        return bool(node) and k.isdigit()

    def pre_activation(self, outputs: dict) -> torch.Tensor:
        """The stage's input current from ``outputs`` (source index -> (n, size) tensor)."""
        h = sum_paths(self.paths, outputs.__getitem__)
        return h + torch.as_tensor(self.bias, dtype=h.dtype)

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        """The stage's output for pre-activation ``h``: ReLU (bounded for Clip), or the logits."""
        if not self.activation:
            return h
        return torch.relu(h) if self.upper is None else h.clamp(0.0, self.upper)

    @property
    def in_chain(self) -> bool:
        """One path, from the stage before it: a plain layer of a chain."""
        return len(self.paths) == 1 and self.paths[0].source == self.index - 1 and self.paths[0].scale == 1

    def _chain_path(self) -> LinearPath:
        if not self.in_chain:
            raise UnsupportedModelError(f"stage {self.name!r} is not a plain layer of a chain (sources "
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
                raise UnsupportedModelError(f"stage {i} ({stage.name!r}) is out of order: hidden populations come "
                                            "first, each fed by earlier ones, then the logits")

    @property
    def hidden(self) -> list:
        return self.stages[:-1]

    def noise_layers(self) -> dict:
        """Noise key ``layer{j}`` -> the hidden stage that is the ONNX graph's ``j``-th activation (the
        populations of MaxPool's exact route take none: the DNN has no such layer)."""
        return {f"layer{j}": stage for j, stage in enumerate(s for s in self.hidden if not s.max_helper)}

    def require_hidden(self):
        """Stop unless some part of the network runs as spiking neurons (a hidden ReLU layer)."""
        if not self.hidden:
            raise UnsupportedModelError(f"{self.source}: the network has no hidden ReLU layer, so no part of it runs "
                                        "as spiking neurons; convert a network with at least one")

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return self.stages[-1].size_out

    @property
    def is_chain(self) -> bool:
        """One path per stage, from the stage before it (no skips, concatenations or max pools)."""
        return all(s.in_chain for s in self.stages)

    def stage_outputs(self, x: torch.Tensor) -> list:
        """Every stage's output for inputs ``x`` (n, features) as torch tensors of ``x``'s dtype,
        differentiable in ``x`` (the DNN as a torch function, e.g. for gradient attacks)."""
        outputs = {INPUT: x.reshape(len(x), -1)}
        for stage in self.stages:
            outputs[stage.index] = stage.activate(stage.pre_activation(outputs))
        return [outputs[s.index] for s in self.stages]

    def activations(self, x: np.ndarray) -> list:
        """Every stage's output for inputs ``x`` (n, features): the hidden populations' (bounded)
        ReLU activations, then the logits (float64 arrays), as the DNN computes them."""
        return [o.numpy() for o in self.stage_outputs(torch.as_tensor(np.asarray(x, np.float64)))]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The DNN these layers describe (float64), e.g. to check an extraction against ORT."""
        return self.activations(x)[-1]

    def linear_ops(self) -> list:
        """Every distinct op, in order of first use."""
        return list({id(op): op for stage in self.stages for path in stage.paths for op in path.ops}.values())

    def macs(self) -> int:
        return sum(op.macs() for op in self.linear_ops())

    def weights(self) -> list:
        """The connection matrices and biases (what the static metrics read)."""
        return [a for op in self.linear_ops() for a in (op.weight, op.bias) if a is not None]

    def fan_out(self, source: int) -> np.ndarray:
        """For each neuron of ``source`` (a hidden stage's index, or INPUT): how many neurons of
        the later stages it reaches through nonzero weights, each consumer's paths from it merged
        into one synapse matrix (a spike costs ``fan_out`` accumulates, as NeuroBench counts)."""
        size = self.n_inputs if source == INPUT else self.stages[source].size_out
        return sum((fan_out(stage, source=source) for stage in self.stages if source in stage.sources), np.zeros(size))


ROUTING_OPS = ("select", "place", "pad")  # no weights: each output is one input (or zero), never a sum


def _routed_fan_out(paths: list, stage: Stage) -> np.ndarray:
    """:func:`fan_out` for paths of routing ops only: each source neuron's number (1-based) sent
    through every path shows which outputs it lands on; its distinct outputs are counted."""
    size = next((p.ops[0].size_in for p in paths if p.ops), stage.size_out)
    ids = torch.arange(1, size + 1, dtype=torch.float64)[None]  # float64: exact for any layer size
    pairs = []
    for path in paths:
        landed = ids
        for op in path.ops:
            landed = op.apply(landed, with_bias=False)
        landed = landed[0].numpy().astype(np.int64)
        outputs = np.flatnonzero(landed)
        pairs.append(np.stack([outputs, landed[outputs] - 1]))
    targets = np.unique(np.concatenate(pairs, axis=1), axis=1)[1]  # each (output, input) pair once
    return np.bincount(targets, minlength=size).astype(np.float64)


def fan_out(stage: Stage, chunk: int = 512, source: int | None = None) -> np.ndarray:
    """For each neuron of ``source`` (default: the stage's only source): how many neurons of
    ``stage`` it reaches through nonzero weights, all its paths into the stage merged."""
    if source is None:
        if len(stage.sources) != 1:
            raise UnsupportedModelError(f"stage {stage.name!r} has sources {stage.sources}; name one")
        source = stage.sources[0]
    cache = stage.__dict__.setdefault("_fan_out", {})
    if source in cache:
        return cache[source]
    paths = [replace(p, scale=1.0) for p in stage.paths if p.source == source]
    if len(paths) == 1 and len(paths[0].ops) == 1 and paths[0].ops[0].kind == "dense":  # a fully connected layer:
        cache[source] = (paths[0].ops[0].weight != 0).sum(axis=0).astype(np.float64)  # its nonzero weights per input
        return cache[source]
    if all(op.kind in ROUTING_OPS for path in paths for op in path.ops):  # e.g. a max-pool population's inputs:
        cache[source] = _routed_fan_out(paths, stage)  # each neuron's distinct targets, read off where it lands
        return cache[source]
    indicators = {}

    def apply(op, x):
        if id(op) not in indicators:  # the op with every nonzero weight 1: which synapses exist
            weight = None if op.weight is None else (op.weight != 0).astype(np.float32)
            indicators[id(op)] = replace(op, weight=weight, bias=None)
        return indicators[id(op)].apply(x, with_bias=False)

    size = next((p.ops[0].size_in for p in paths if p.ops), stage.size_out)  # identity paths: same size
    counts = []
    for a in range(0, size, chunk):
        h = F.one_hot(torch.arange(a, min(a + chunk, size)), size).float()  # one row per neuron of the chunk
        counts.append((sum_paths(paths, lambda _: h, apply) > 0).sum(dim=1).numpy())
    cache[source] = np.concatenate(counts).astype(np.float64)
    return cache[source]
