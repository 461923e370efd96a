"""Layer-wise error correction of a calibrated conversion for ``T`` steps, training-free, after the
"light" SNN Calibration of Li et al. ("A Free Lunch From ANN: Towards Efficient, Accurate Spiking
Neural Networks Calibration", ICML 2021).

Layer by layer (the earlier ones already corrected), from calibration (training) images:

1. *bias correction*: each output channel's mean error (the spiking layer's mean output over ``T``
   steps minus the DNN's activation) is taken out of its bias (``channel_bias``, activation units);
2. *potential initialisation*: the error left is taken out of the channel's initial membrane
   potential: starting ``dv`` thresholds lower removes ``dv`` spikes over ``T`` steps, i.e.
   ``dv / (T * rate_scale * dt)`` of the mean output (``channel_voltage``, from half the threshold).

The errors come from a PyTorch simulation of the Nengo network's IF neurons (no output synapse; the
same currents, spikes and reset by subtraction): a layer's input currents are computed once, and
only its neurons are run again per correction.
"""

from dataclasses import replace

import numpy as np
import torch

from snnbench.conversion.graph import INPUT, ConvertedModel, sum_paths
from snnbench.conversion.nengo_net import IF_NEURONS, LayerParams, layer_list
from snnbench.errors import SnnbenchError


def _fire(currents: torch.Tensor, stage, params: LayerParams, dt: float, seed: int) -> torch.Tensor:
    """One hidden layer's IF neurons, as built, driven by ``currents`` (T, n, size; before gain and
    bias): their output (activation units) at every step."""
    if params.neuron not in IF_NEURONS:
        raise SnnbenchError(f"error correction simulates IF neurons ({', '.join(IF_NEURONS)}), "
                            f"got {params.neuron!r}")
    if params.synapse is not None:
        raise SnnbenchError("error correction simulates layers without an output synapse; use --synapse none")
    rs = params.rate_scale * params.per_neuron(stage, "channel_scales", 1.0)
    bias = rs * (params.bias_scale * stage.bias + params.bias_offset + params.per_neuron(stage, "channel_bias", 0.0))
    if params.channel_voltage is not None:
        v0 = params.per_neuron(stage, "channel_voltage", 0.0)
    elif params.initial_voltage == "half":
        v0 = np.full(stage.size_out, 0.5)
    else:
        v0 = np.random.default_rng(seed).uniform(0, 1, stage.size_out)
    rs, bias, v0 = (torch.as_tensor(a, dtype=torch.float64).to(currents.dtype) for a in (rs, bias, v0))
    v, max_spikes = v0.expand(currents.shape[1], -1).clone(), params.max_spikes(stage, dt)
    out = torch.empty_like(currents)
    for t in range(len(currents)):
        current = params.gain * rs * currents[t] + bias
        v += (current if params.neuron == "if" else torch.relu(current)) * dt
        spikes = torch.clamp(torch.floor(torch.relu(v)), max=max_spikes)
        v -= spikes
        out[t] = spikes / (rs * dt)
    return out


def _input_currents(stage, series: dict) -> torch.Tensor:
    """The stage's summed paths (no bias) at every step: ``(T, n, size)`` from its sources'
    ``(T, n, size)`` output series (time folded into the batch, so each op runs once; a stage fed
    by the input alone, constant over the steps, computed once)."""
    steps, n = next(iter(series.values())).shape[:2]
    if stage.sources == [INPUT]:
        return sum_paths(stage.paths, lambda source: series[INPUT][0]).expand(steps, -1, -1)
    h = sum_paths(stage.paths, lambda source: series[source].reshape(steps * n, -1))
    return h.reshape(steps, n, -1)


def _input_series(x: np.ndarray, steps: int, dtype) -> dict:
    inputs = torch.as_tensor(np.asarray(x).reshape(len(x), -1), dtype=dtype)
    return {INPUT: inputs.expand(steps, -1, -1)}


def _release(model: ConvertedModel, series: dict, done: int):
    """Drop the output series that no stage after ``done`` reads."""
    needed = {src for stage in model.stages[done + 1:] for src in stage.sources}
    for key in [k for k in series if k not in needed]:
        del series[key]


@torch.no_grad()
def simulate(model: ConvertedModel, layers: list, x: np.ndarray, steps: int, dt: float = 0.001,
             seed: int = 0, dtype=torch.float64) -> list[np.ndarray]:
    """Each hidden layer's mean output over ``steps`` steps (activation units, ``(n, size)``),
    and last the mean logits, of the spiking network on inputs ``x``. Layer by layer: with no
    output synapse a layer's spikes at step t depend on its inputs up to step t only, so every
    layer runs all its steps once its inputs' are known."""
    layers = layer_list(layers, len(model.hidden))
    series, means = _input_series(x, steps, dtype), []
    for i, (stage, params) in enumerate(zip(model.hidden, layers)):
        series[i] = _fire(_input_currents(stage, series), stage, params, dt, seed + i)
        means.append(series[i].mean(dim=0).numpy())
        _release(model, series, i)
    logits = _input_currents(model.stages[-1], series) + torch.as_tensor(model.stages[-1].bias, dtype=dtype)
    return means + [logits.mean(dim=0).numpy()]


def channel_means(values: np.ndarray, stage) -> np.ndarray:
    """Mean over samples (and positions) of each output channel of ``stage``."""
    return values.reshape(len(values), stage.channels, -1).mean(axis=(0, 2))


@torch.no_grad()
def correct(model: ConvertedModel, layers: list, x: np.ndarray, steps: int, dt: float = 0.001,
            seed: int = 0, dtype=torch.float32) -> tuple[list[LayerParams], list[dict]]:
    """The calibrated ``layers`` with bias correction and potential initialisation for ``steps``
    steps, from calibration inputs ``x`` (training data only), and per layer the mean absolute
    channel error before and after (activation units), for the log."""
    layers = layer_list(layers, len(model.hidden))  # a new list: its entries are replaced below
    dnn = model.activations(x)
    series, report = _input_series(x, steps, dtype), []
    for i, stage in enumerate(model.hidden):
        target = channel_means(dnn[i], stage)
        currents = _input_currents(stage, series)
        first = slice(None, None, stage.size_out // stage.channels)  # one neuron of each channel

        def run():
            out = _fire(currents, stage, layers[i], dt, seed + i)
            return out, channel_means(out.mean(dim=0).double().numpy(), stage) - target

        _, before = run()
        bias = layers[i].per_neuron(stage, "channel_bias", 0.0)[first]
        layers[i] = replace(layers[i], channel_bias=[float(b) for b in bias - before])
        _, left = run()
        params = layers[i]
        rs = (params.rate_scale * params.per_neuron(stage, "channel_scales", 1.0))[first]
        start = params.per_neuron(stage, "channel_voltage", 0.5 if params.initial_voltage == "half" else 0.0)[first]
        layers[i] = replace(params, channel_voltage=[float(v) for v in start - left * steps * rs * dt])
        series[i], after = run()
        _release(model, series, i)
        report.append({"layer": stage.name, "error_before": float(np.abs(before).mean()),
                       "error_after_bias": float(np.abs(left).mean()), "error_after": float(np.abs(after).mean())})
    return layers, report
