"""The converted spiking network as a NIR graph (Neuromorphic Intermediate Representation, Pedersen
et al. 2024), for snntorch, Norse, sinabs, Lava-dl, Rockpool, Spyx and the hardware toolchains.

Discrete time, one NIR time unit per simulation step (an ``IF`` with ``r = 1`` adds each step's input
to its membrane), every scale of :mod:`snnbench.conversion.nengo_net` folded into the weights:

* hidden layer ``i`` (rate scale ``rs_i``, gain ``g_i``): its ops, the last one with weight
  ``g_i * rs_i / rs_{i-1} * W`` (inputs are spike counts; the first layer's ``dt * rs_0 * g_0 * W``,
  its input the pixels every step) and bias ``dt * rs_i * (bias_scale * b + bias_offset)``, then
  ``IF(r=1, v_threshold=1, v_reset=0)``;
* the readout: the last layer's spike counts through ``W / (rs * dt)`` plus the ONNX bias, logits per
  step that the reader averages (``metadata["readout"]``).

Each IF node's metadata says what NIR's IF does not: the initial voltage (0.5 for the calibrated
conversion), reset by subtraction, ``floor(v)`` spikes per step. Only chains of dense, conv and
average-pool ops with IF neurons are exported; anything else stops with one line.
"""

from pathlib import Path

import numpy as np

from snnbench.conversion.nengo_net import IF_NEURONS, LayerParams, SimConfig, layer_list
from snnbench.conversion.graph import ConvertedModel, LinearOp
from snnbench.errors import ConfigError, UnsupportedModelError

INITIAL_VOLTAGE = {"half": 0.5, "uniform": "uniform [0, 1)"}


def _op_node(op: LinearOp, weight_scale: float, bias):
    """One op as a NIR node; the stage's flat ``bias`` (or None) goes into a dense / conv op."""
    import nir

    weight = None if op.weight is None else (weight_scale * op.weight).astype(np.float32)
    if op.kind == "dense":
        return nir.Linear(weight) if bias is None else nir.Affine(weight, bias.astype(np.float32))
    if op.kind == "conv":
        per_channel = np.zeros((op.out_shape[0], 1)) if bias is None else bias.reshape(op.out_shape[0], -1)
        if not np.allclose(per_channel, per_channel[:, :1]):
            raise UnsupportedModelError("NIR export: this conv layer's bias varies within a channel (a bias pushed "
                                        "through padding); NIR's Conv2d takes one bias per channel")
        top, left, bottom, right = op.pads
        if (top, left) != (bottom, right) or op.groups != 1 or op.dilations != (1, 1):
            raise UnsupportedModelError(f"NIR export writes convolutions with symmetric padding, no groups or "
                                        f"dilation; this one has pads {op.pads}, groups {op.groups}, dilations "
                                        f"{op.dilations}")
        return nir.Conv2d(tuple(op.in_shape[1:]), weight, op.strides, (top, left), 1, 1,
                          per_channel[:, 0].astype(np.float32))
    if op.kind == "avgpool":
        return nir.AvgPool2d(np.array(op.kernel), np.array(op.strides), np.zeros(2, np.int64))
    raise UnsupportedModelError(f"NIR export covers dense, conv and average-pool ops; this model has a {op.kind!r} op "
                                "(max pooling: convert with --maxpool average)")


def to_nir(model: ConvertedModel, layers, sim: SimConfig):
    """The spiking network of ``model`` with neuron settings ``layers`` as a ``nir.NIRGraph``."""
    import nir

    if not model.is_chain:
        raise UnsupportedModelError("NIR export covers layer chains; this graph has skips, concatenations or max-pool "
                                    "trees (convert a chain, or with --maxpool average)")
    layers = layer_list(layers, len(model.hidden))
    if any(p.channel_scales or p.channel_bias or p.channel_voltage for p in layers):
        raise UnsupportedModelError("NIR export writes one rate scale, bias and start per layer; this setting has "
                                    "per-channel ones (convert with --method calibrated --scales layer)")
    bad = sorted({p.neuron for p in layers if p.neuron not in IF_NEURONS})
    if bad:
        raise UnsupportedModelError(f"NIR export writes IF neurons (the calibrated conversion); this setting has {bad}")
    dt = sim.dt
    nodes, edges = {}, []
    first = model.stages[0].ops[0]
    input_shape = first.in_shape if first.kind in ("conv", "avgpool") else (model.n_inputs,)
    nodes["input"] = nir.Input({"input": np.array(input_shape)})
    previous, shape, scale_in = "input", tuple(input_shape), None
    for i, stage in enumerate(model.stages):
        params: LayerParams | None = layers[i] if stage.activation else None
        if params is not None:
            gain = params.gain * params.rate_scale * (dt if scale_in is None else 1.0 / scale_in)
            bias = dt * params.rate_scale * (params.bias_scale * stage.bias + params.bias_offset)
        else:  # the readout: spike counts back to activations, the ONNX bias
            gain, bias = 1.0 / (scale_in * dt), stage.bias
        for k, op in enumerate(stage.ops):
            if op.kind == "dense" and len(shape) == 3:
                nodes[f"flatten{i}_{k}"] = nir.Flatten({"input": np.array(shape)}, start_dim=0)
                edges.append((previous, f"flatten{i}_{k}"))
                previous = f"flatten{i}_{k}"
            last = k == len(stage.ops) - 1
            if last and op.kind not in ("dense", "conv"):
                raise UnsupportedModelError(f"NIR export: stage {stage.name!r} ends with a {op.kind!r} op; it needs a "
                                            "dense or conv op last (where its bias goes)")
            name = f"layer{i}_op{k}" if params is not None else f"readout_op{k}"
            nodes[name] = _op_node(op, gain if last else 1.0, bias if last else None)
            edges.append((previous, name))
            previous, shape = name, tuple(op.out_shape)
        if params is None:
            break
        neurons = f"layer{i}"
        ones = np.ones(shape, np.float32)
        nodes[neurons] = nir.IF(r=ones, v_threshold=ones, v_reset=np.zeros(shape, np.float32),
                                metadata={"initial_voltage": INITIAL_VOLTAGE[params.initial_voltage],
                                          "reset": "subtract", "spikes_per_step": "floor(v), several allowed",
                                          "signed_membrane": params.neuron == "if", "rate_scale_hz": params.rate_scale})
        edges.append((previous, neurons))
        previous, scale_in = neurons, params.rate_scale
    nodes["output"] = nir.Output({"output": np.array(shape)})
    edges.append((previous, "output"))
    metadata = {"source": "snnbench convert", "dt_s": dt, "steps": sim.steps, "readout": sim.readout,
                "time": "discrete: one NIR time unit per simulation step"}
    return nir.NIRGraph(nodes, edges, metadata=metadata)


def write_nir(model: ConvertedModel, layers, sim: SimConfig, path) -> Path:
    """Write the NIR graph of the network to ``path`` (HDF5, read back with ``nir.read``)."""
    import nir

    graph = to_nir(model, layers, sim)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        nir.write(str(path), graph)
    except OSError as exc:
        raise ConfigError(f"cannot write the NIR graph to {path} ({exc}); give a writable --nir-out path") from None
    return path
