"""The converted network as nengo-loihi builds it for Intel's Loihi (run on its emulator without the
hardware), with what the chip imposes:

* **spikes in**: an off-chip input layer of one IF neuron per pixel (rate scale ``1 / dt``, starting at
  half the threshold) turns pixels into spikes (:func:`with_input_layer`; the DNN is unchanged, as
  pixels are >= 0);
* **neurons**: the IF maps to Loihi's non-leaky compartment (threshold ``1 / dt``); the signed IF's
  floor is Loihi's most negative voltage, ``-(2**23 - 1)`` (``if-rectified``: 0). Loihi starts the
  membrane at 0, resets it *to zero* (the remainder is lost: ``a`` thresholds per step give about
  ``a / (1 + a)`` spikes per step), fires at most one spike per step, and adds a step of synaptic
  delay per on-chip connection;
* **fixed point**: weights (8-bit mantissas, a shared exponent per block), biases, thresholds and
  currents are discretized as on the chip;
* **cores**: 1024 compartments, 4096 input and 4096 output axons and 1 Mbit of synapse memory per
  core; image-shaped layers are split into spatial blocks (:func:`block_shape`). A network that does
  not fit stops with one line naming the limit.

nengo-loihi merges only dense transforms through pass-through nodes, so average pooling is folded
into the op after it (:func:`fold_pooling`, exact).
"""

import functools
import warnings
from dataclasses import replace

import numpy as np

from snnbench.conversion.nengo_net import SPIKING_NEURONS, LayerParams, SignedIF
from snnbench.conversion.graph import INPUT, ConvertedModel, LinearOp, LinearPath, Stage
from snnbench.errors import ConfigError

LOIHI_VMIN = -(2 ** 23) + 1        # most negative membrane voltage of a Loihi compartment
BLOCK_COMPARTMENTS = 256            # compartments per block of an image-shaped layer
INPUT_LAYER = "input_spikes"


def _fold_pair(pool: LinearOp, after: LinearOp) -> LinearOp | None:
    """``after(pool(x))`` as one op, for a pool whose window equals its stride; else None."""
    if tuple(pool.kernel) != tuple(pool.strides):
        return None
    sh, sw = pool.strides
    if after.kind == "conv" and after.padding == "valid":
        weight = np.repeat(np.repeat(after.weight, sh, axis=2), sw, axis=3) / (sh * sw)
        kernel = (after.kernel[0] * sh, after.kernel[1] * sw)
        strides = (after.strides[0] * sh, after.strides[1] * sw)
        return LinearOp("conv", pool.in_shape, after.out_shape, weight.astype(np.float32), after.bias, kernel,
                        strides, "valid")
    if after.kind == "dense":
        channels, rows, cols = pool.out_shape
        per_window = after.weight.reshape(after.size_out, channels, rows, cols)
        weight = np.zeros((after.size_out, *pool.in_shape), np.float32)
        weight[:, :, :rows * sh, :cols * sw] = np.repeat(np.repeat(per_window, sh, axis=2), sw, axis=3) / (sh * sw)
        return LinearOp("dense", (pool.size_in,), after.out_shape, weight.reshape(after.size_out, -1), after.bias)
    return None


def _fold_ops(ops: list, folded: dict) -> list:
    out = []
    for op in ops:
        if out and out[-1].kind == "avgpool":
            key = (id(out[-1]), id(op))  # shared ops stay shared
            if key not in folded:
                folded[key] = _fold_pair(out[-1], op)
            if folded[key] is not None:
                out[-1] = folded[key]
                continue
        out.append(op)
    return out


def fold_pooling(model: ConvertedModel) -> ConvertedModel:
    """The same network with every average pool folded into the dense / conv op after it."""
    folded = {}
    stages = [replace(s, paths=[replace(p, ops=_fold_ops(p.ops, folded)) for p in s.paths]) for s in model.stages]
    return replace(model, stages=stages)


def with_input_layer(model: ConvertedModel) -> ConvertedModel:
    """The network with an identity population first (the off-chip layer turning pixels into
    spikes): every stage that read the input reads it, the others shift by one."""
    first = Stage([LinearPath(INPUT, [], 1.0)], np.zeros(model.n_inputs), True, model.input_shape, INPUT_LAYER)
    stages = [first] + [replace(s, paths=[replace(p, source=0 if p.source == INPUT else p.source + 1) for p in s.paths])
                        for s in model.stages]
    return replace(model, stages=stages)


def input_layer_params(dt: float) -> LayerParams:
    """The input layer's neurons: a pixel of 1 fires every step."""
    return LayerParams(neuron="if", rate_scale=1.0 / dt, initial_voltage="half")


def check_neurons(layers: list):
    bad = sorted({p.neuron for p in layers if p.neuron not in SPIKING_NEURONS})
    if bad:
        raise ConfigError(f"--target nengo-loihi runs spiking neurons ({', '.join(SPIKING_NEURONS)}); this "
                          f"setting has {bad}")


def block_shape(shape: tuple):
    """A spatial split of a (C, H, W) layer into blocks of at most BLOCK_COMPARTMENTS, or None."""
    if len(shape) != 3 or int(np.prod(shape)) <= BLOCK_COMPARTMENTS:
        return None
    channels, rows, cols = shape
    div = 1
    while channels * -(-rows // div) * -(-cols // div) > BLOCK_COMPARTMENTS and div < max(rows, cols):
        div += 1
    return channels, -(-rows // div), -(-cols // div)


@functools.cache
def register_loihi_neurons():
    """Teach nengo-loihi's builder the signed IF (once): Loihi's non-leaky compartment with the
    most negative floor (clamped to Loihi's range by :func:`clamp_voltage_floor` after building)."""
    from nengo_loihi.builder import Builder

    @Builder.register(SignedIF)
    def build_signed_if(model, neuron_type, neurons, block):
        block.compartment.configure_relu(vth=1.0 / model.dt, dt=model.dt)
        block.compartment.vmin = -np.inf


def clamp_voltage_floor(emulator):
    """Loihi's voltage floor is at most ``2**23 - 1`` below zero (the discretizer allows more)."""
    state = emulator.compartment
    state.vmin[state.vmin < LOIHI_VMIN] = LOIHI_VMIN


def import_nengo_loihi():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has not been tested with your `nengo` version.*")
        import nengo_loihi
    return nengo_loihi
