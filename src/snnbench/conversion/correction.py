"""Layer-wise error correction of a calibrated conversion, after the "light" pipeline of SNN
Calibration (Li, Deng, Dong, Gong, Gu: "A Free Lunch From ANN: Towards Efficient, Accurate
Spiking Neural Networks Calibration", ICML 2021): training-free, from calibration (training)
images only, for one number of time steps ``T``.

Rate coding leaves a systematic error in each spiking layer's output: over ``T`` steps a
neuron's spike count is its rate rounded, and the error of the layers before it arrives in its
input. Layer by layer, in order (every earlier layer already corrected):

1. *bias correction*: the expected error of each output channel, the mean over calibration
   images and positions of (the spiking layer's mean output over ``T`` steps - the DNN's
   activation), is taken out of the channel's bias (``channel_bias``, activation units);
2. *potential initialisation*: the error left after 1 is measured again and taken out of the
   channel's initial membrane potential: starting ``dv`` (in thresholds) lower removes ``dv``
   spikes over the ``T`` steps, i.e. ``dv / (T * rate_scale * dt)`` of the mean output
   (``channel_voltage``, from half the threshold).

The errors come from :func:`simulate`, a PyTorch simulation of the Nengo network's IF neurons
(:mod:`snnbench.conversion.neurons`, no output synapse; the same currents, spikes and reset by
subtraction, float64), so that the correction needs no Nengo simulator run per layer.
"""

from dataclasses import replace

import numpy as np
import torch

from snnbench.conversion.graph import INPUT, ConvertedModel, sum_paths
from snnbench.conversion.nengo_net import LayerParams, layer_list
from snnbench.errors import SnnbenchError

CORRECTABLE_NEURONS = ("if", "if-rectified")


def _neuron_constants(stage, params: LayerParams, dt: float, seed: int) -> dict:
    """Per-neuron rate scale, bias current and initial voltage of one hidden layer (as built)."""
    if params.neuron not in CORRECTABLE_NEURONS:
        raise SnnbenchError(f"error correction simulates IF neurons ({', '.join(CORRECTABLE_NEURONS)}), "
                            f"got {params.neuron!r}")
    if params.synapse is not None:
        raise SnnbenchError("error correction simulates layers without an output synapse; use --synapse none")
    rs = params.rate_scale * params.per_neuron(stage, "channel_scales", 1.0)
    bias = params.bias_scale * stage.bias + params.bias_offset + params.per_neuron(stage, "channel_bias", 0.0)
    if params.channel_voltage is not None:
        v0 = params.per_neuron(stage, "channel_voltage", 0.0)
    elif params.initial_voltage == "half":
        v0 = np.full(stage.size_out, 0.5)
    else:
        v0 = np.random.default_rng(seed).uniform(0, 1, stage.size_out)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return {"rs": as_tensor(rs), "bias": as_tensor(rs * bias), "v0": as_tensor(v0),
            "gain": params.gain, "signed": params.neuron == "if", "max_spikes": params.max_spikes(stage, dt)}


@torch.no_grad()
def simulate(model: ConvertedModel, layers: list, x: np.ndarray, steps: int, dt: float = 0.001,
             upto: int | None = None, batch: int = 250, seed: int = 0) -> list[np.ndarray]:
    """Each hidden layer's mean output over ``steps`` steps (activation units, ``(n, size)``),
    and last the mean logits, of the spiking network on inputs ``x``; with ``upto``, the hidden
    layers up to and including that one only."""
    layers = layer_list(layers, len(model.hidden))
    last = len(model.hidden) - 1 if upto is None else upto
    constants = [_neuron_constants(s, p, dt, seed + i) for i, (s, p) in enumerate(zip(model.hidden[:last + 1],
                                                                                       layers))]
    stages = model.hidden[:last + 1] + ([model.stages[-1]] if upto is None else [])
    chunks = []
    for a in range(0, len(x), batch):
        inputs = torch.as_tensor(np.asarray(x[a: a + batch], np.float64).reshape(min(batch, len(x) - a), -1))
        voltages = [c["v0"].expand(len(inputs), -1).clone() for c in constants]
        totals = [0.0] * len(stages)
        for _ in range(steps):
            outputs = {INPUT: inputs}
            for i, stage in enumerate(stages):
                if i >= len(constants):  # the logits
                    outputs[stage.index] = stage.pre_activation(outputs)
                else:
                    c, v = constants[i], voltages[i]
                    current = c["gain"] * c["rs"] * sum_paths(stage.paths, outputs.__getitem__) + c["bias"]
                    v += (current if c["signed"] else torch.relu(current)) * dt
                    spikes = torch.clamp(torch.floor(torch.relu(v)), max=c["max_spikes"])
                    v -= spikes
                    outputs[stage.index] = spikes / (c["rs"] * dt)
                totals[i] = totals[i] + outputs[stage.index]
        chunks.append([(t / steps).numpy() for t in totals])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(stages))]


def channel_means(values: np.ndarray, stage) -> np.ndarray:
    """Mean over samples (and positions) of each output channel of ``stage``."""
    return values.reshape(len(values), stage.channels, -1).mean(axis=(0, 2))


def correct(model: ConvertedModel, layers: list, x: np.ndarray, steps: int, dt: float = 0.001,
            seed: int = 0) -> tuple[list[LayerParams], list[dict]]:
    """The calibrated ``layers`` with bias correction and potential initialisation for ``steps``
    steps, from calibration inputs ``x`` (training data only); also, per layer, the mean absolute
    channel error before and after (activation units), for the log."""
    layers = list(layer_list(layers, len(model.hidden)))
    dnn = model.activations(x)
    report = []
    for i, stage in enumerate(model.hidden):
        target = channel_means(dnn[i], stage)

        def error() -> np.ndarray:
            return channel_means(simulate(model, layers, x, steps, dt, upto=i, seed=seed)[i], stage) - target

        before = error()
        bias = layers[i].per_neuron(stage, "channel_bias", 0.0)[:: stage.size_out // stage.channels]
        layers[i] = replace(layers[i], channel_bias=[float(b) for b in bias - before])
        left = error()
        params = layers[i]
        rs = (params.rate_scale * params.per_neuron(stage, "channel_scales", 1.0))[:: stage.size_out // stage.channels]
        start = params.per_neuron(stage, "channel_voltage", 0.5 if params.initial_voltage == "half" else 0.0)
        start = start[:: stage.size_out // stage.channels]
        layers[i] = replace(params, channel_voltage=[float(v) for v in start - left * steps * rs * dt])
        after = error()
        report.append({"layer": stage.name, "error_before": float(np.abs(before).mean()),
                       "error_after_bias": float(np.abs(left).mean()), "error_after": float(np.abs(after).mean())})
    return layers, report
