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
same currents, spikes and reset by subtraction), float32 on one thread: a layer's input currents are
computed once (for a layer fed by the input alone, constant over the steps, once rather than per step)
and only its neurons run again per correction step, keeping spike counts (for signed IF neurons, from
the running maximum of the summed drive) rather than spike times; the spikes a later layer reads are
kept as uint8 counts. Inputs that never inform the correction (validation images) may ride along.
"""

from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from snnbench.conversion.graph import INPUT, ConvertedModel, LinearOp, conv_out_len, sum_paths
from snnbench.conversion.nengo_net import IF_NEURONS, LayerParams, layer_list
from snnbench.errors import SnnbenchError

CHUNK = 1 << 20  # values per op call (rows x size): bounds the temporaries of a long series
BLOCK = 1 << 18  # values per block of neurons simulated over all steps at once (cache-sized)


@contextmanager
def one_thread():
    """Torch on one thread: the simulation's many small ops run faster than with threads that wait
    for each other at every op (on a busy 2-core machine, 1.8x for a layer's convolutions and 2x for its
    neurons, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Ops:
    """The model's linear ops in ``dtype``, weights converted once; what :func:`sum_paths` applies. It
    also keeps one scratch buffer for a layer's input currents, reused from layer to layer (and from one
    correction to the next, given the same Ops): fresh memory costs the system a page fault per 4 KiB."""

    def __init__(self, dtype=torch.float32):
        self.dtype, self.weights, self.scratch = dtype, {}, torch.empty(0, dtype=dtype)

    def buffer(self, rows: int, size: int) -> torch.Tensor:
        """A ``(rows, size)`` view of the scratch buffer (its contents are the last user's)."""
        if self.scratch.numel() < rows * size:
            self.scratch = torch.empty(0, dtype=self.dtype)  # released before the larger one is taken
            self.scratch = torch.empty(rows * size, dtype=self.dtype)
        return self.scratch[: rows * size].view(rows, size)

    def weight(self, op: LinearOp) -> torch.Tensor:
        if id(op) not in self.weights:
            self.weights[id(op)] = torch.as_tensor(np.asarray(op.weight), dtype=self.dtype)
        return self.weights[id(op)]

    def __call__(self, op: LinearOp, x: torch.Tensor) -> torch.Tensor:
        if op.kind == "dense":
            return F.linear(x, self.weight(op))
        if op.kind != "conv":
            return op.apply(x, with_bias=False)
        top, left, bottom, right = op.pads
        image = x.reshape(len(x), *op.in_shape)
        padding = (top, left)
        if _symmetric_output(op) != tuple(op.out_shape[1:]):  # pads that the conv cannot take: padded first
            image, padding = F.pad(image, (left, right, top, bottom)), 0
        out = F.conv2d(image, self.weight(op), None, op.strides, padding, op.dilations, op.groups)
        return out.reshape(len(x), -1)


def _symmetric_output(op: LinearOp) -> tuple:
    """A conv's output size with its top and left pads on both sides: its own output where the extra
    bottom or right pad is never read (e.g. a stride-2 conv's (1, 1, 0, 0) pads)."""
    top, left, bottom, right = op.pads
    if bottom > top or right > left:
        return ()
    return tuple(conv_out_len(n, k, s, p, p) for n, k, s, p in zip(op.in_shape[1:], op.dilated_kernel, op.strides,
                                                                     (top, left)))


def stage_input(stage, value, ops: Ops, rows: int, scratch: bool = False) -> torch.Tensor:
    """The stage's summed paths (no bias) for ``rows`` rows, ``value(source)[a:b]`` giving rows a to b
    of each source's output (a tensor, or :class:`Spikes`), in chunks of about :data:`CHUNK` values;
    written to ``ops``' scratch buffer if ``scratch`` (valid until its next use)."""
    widest = max([stage.size_out] + [op.size_in for path in stage.paths for op in path.ops])
    chunk = max(1, CHUNK // widest)
    if chunk >= rows:
        return sum_paths(stage.paths, lambda source: value(source)[:rows], ops)
    out = ops.buffer(rows, stage.size_out) if scratch else torch.empty(rows, stage.size_out, dtype=ops.dtype)
    for a in range(0, rows, chunk):
        out[a: a + chunk] = sum_paths(stage.paths, lambda source: value(source)[a: a + chunk], ops)
    return out


def activations(model: ConvertedModel, x: np.ndarray, ops: Ops | None = None) -> list[torch.Tensor]:
    """Every stage's output (the hidden populations' bounded ReLU activations, then the logits) as the
    DNN computes them, in ``ops.dtype`` (float32 by default)."""
    ops = ops or Ops()
    outputs = {INPUT: torch.as_tensor(np.asarray(x).reshape(len(x), -1), dtype=ops.dtype)}
    with torch.no_grad(), one_thread():
        for stage in model.stages:
            h = stage_input(stage, outputs.__getitem__, ops, len(x))
            outputs[stage.index] = stage.activate(h + torch.as_tensor(stage.bias, dtype=ops.dtype))
    return [outputs[s.index] for s in model.stages]


def _neuron_terms(stage, params: LayerParams, dt: float, seed: int, dtype) -> dict:
    """Per neuron of ``stage``: the input's and the bias's voltage increment per step, the initial
    voltage, the output per spike (activation units) and the bound on spikes per step."""
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
    terms = {"gain": params.gain * rs * dt, "bias": bias * dt, "v0": v0, "amplitude": 1.0 / (rs * dt)}
    terms = {k: torch.as_tensor(v, dtype=torch.float64).to(dtype) for k, v in terms.items()}
    max_spikes = params.max_spikes(stage, dt)
    return {**terms, "max_spikes": None if np.isinf(max_spikes) else float(max_spikes)}


class Spikes:
    """A layer's spikes at every step, ``(steps, n, size)``: counts (uint8 where every neuron fires at most 255
    spikes in all, else float) and each neuron's output per spike (activation units)."""

    def __init__(self, counts: torch.Tensor, amplitude: torch.Tensor):
        self.counts, self.amplitude = counts, amplitude

    def flat(self) -> "Spikes":
        """Time folded into the batch: ``(steps * n, size)``."""
        return Spikes(self.counts.reshape(-1, self.counts.shape[-1]), self.amplitude)

    def __getitem__(self, rows) -> torch.Tensor:
        """The output (activation units) of rows ``rows`` of the first axis."""
        return self.counts[rows].to(self.amplitude.dtype).mul_(self.amplitude)


def _signed_count(currents: torch.Tensor, steps: int, terms: dict) -> torch.Tensor:
    """The spikes of unbounded signed IF neurons over ``steps`` steps, without their times: with reset by
    subtraction the count after t steps is ``max(0, floor(max over s <= t of v0 + the drive summed up to s))``,
    so only the running sum and its maximum are kept (held currents: the sum is linear in the steps)."""
    held, (n, size) = len(currents) == 1, currents.shape[1:]
    total = torch.empty(n, size, dtype=currents.dtype)
    block = max(1, BLOCK // size)
    for a in range(0, n, block):
        v0 = terms["v0"].expand(min(block, n - a), -1)
        drive = torch.addcmul(terms["bias"], currents[0, a: a + block], terms["gain"])
        if held:
            peak = v0 + torch.maximum(drive, drive * steps)
        else:
            summed = v0 + drive
            peak = summed.clone()
            for t in range(1, steps):
                torch.addcmul(terms["bias"], currents[t, a: a + block], terms["gain"], out=drive)
                summed += drive
                torch.maximum(peak, summed, out=peak)
        total[a: a + block] = peak.floor_().clamp_(min=0.0)
    return total


def _fire(currents: torch.Tensor, steps: int, stage, params: LayerParams, dt: float, seed: int,
          keep: bool = True, counts=torch.uint8) -> tuple[Spikes | None, torch.Tensor]:
    """One hidden layer's IF neurons, as built, driven for ``steps`` steps by ``currents``
    (``(steps, n, size)``, or ``(1, n, size)`` held over the steps; before gain and bias): their
    spikes at every step if ``keep`` (else None), and their mean output over the steps (activation
    units). Blocks of samples run all their steps at a time, so the membrane stays in cache."""
    terms = _neuron_terms(stage, params, dt, seed, currents.dtype)
    if not keep and params.neuron == "if" and terms["max_spikes"] is None:
        return None, _signed_count(currents, steps, terms).mul_(terms["amplitude"] / steps)
    held, (n, size) = len(currents) == 1, currents.shape[1:]
    out = torch.empty(steps, n, size, dtype=counts) if keep else None
    total = torch.zeros(n, size, dtype=currents.dtype)
    block = max(1, BLOCK // size)
    for a in range(0, n, block):
        v = terms["v0"].expand(min(block, n - a), -1).clone()
        drive, spikes, count = torch.empty_like(v), torch.empty_like(v), total[a: a + block]
        for t in range(steps):
            if t == 0 or not held:
                torch.addcmul(terms["bias"], currents[0 if held else t, a: a + block], terms["gain"], out=drive)
                if params.neuron != "if":  # if-rectified drops each step's negative current
                    drive.clamp_(min=0.0)
            v += drive
            torch.floor(v, out=spikes).clamp_(min=0.0, max=terms["max_spikes"])
            v -= spikes
            count += spikes
            if keep:
                out[t, a: a + block] = spikes
    if keep and counts == torch.uint8 and float(total.max()) > 255:  # a count that uint8 cannot hold
        return _fire(currents, steps, stage, params, dt, seed, keep, counts=currents.dtype)
    return Spikes(out, terms["amplitude"]) if keep else None, total.mul_(terms["amplitude"] / steps)


def _input_currents(stage, series: dict, steps: int, n: int, ops: Ops) -> torch.Tensor:
    """The stage's summed paths (no bias): ``(steps, n, size)`` from its sources' spikes (time folded
    into the batch); ``(1, n, size)`` for a stage fed by the input alone, which is constant over the
    steps (the input is held: ``(n, size)``). In ``ops``' scratch buffer: valid until the next call."""
    if stage.sources == [INPUT]:
        return stage_input(stage, lambda source: series[INPUT], ops, n, scratch=True)[None]
    flat = {k: series[k].expand(steps, -1, -1).reshape(steps * n, -1) if k == INPUT else series[k].flat()
            for k in stage.sources}
    return stage_input(stage, flat.__getitem__, ops, steps * n, scratch=True).reshape(steps, n, -1)


def _input_series(x: np.ndarray, dtype) -> dict:
    """The network input, held over the steps: source INPUT's ``(n, size)`` value."""
    return {INPUT: torch.as_tensor(np.asarray(x).reshape(len(x), -1), dtype=dtype)}


def _release(model: ConvertedModel, series: dict, done: int):
    """Drop the spikes that no stage after ``done`` reads."""
    needed = {src for stage in model.stages[done + 1:] for src in stage.sources}
    for key in [k for k in series if k not in needed]:
        del series[key]


def _readout_only(model: ConvertedModel, index: int) -> bool:
    """Whether only the logits read hidden stage ``index``: its mean over the steps is all they need
    (the readout is linear)."""
    return all(index not in stage.sources for stage in model.hidden)


def _logits(model: ConvertedModel, means: dict, n: int, ops: Ops) -> torch.Tensor:
    """The mean logits over the steps from the means of the stages that feed them (source -> (n, size))."""
    stage = model.stages[-1]
    return stage_input(stage, means.__getitem__, ops, n) + torch.as_tensor(stage.bias, dtype=ops.dtype)


@torch.no_grad()
@one_thread()
def simulate(model: ConvertedModel, layers: list, x: np.ndarray, steps: int, dt: float = 0.001,
             seed: int = 0, dtype=torch.float64) -> list[np.ndarray]:
    """Each hidden layer's mean output over ``steps`` steps (activation units, ``(n, size)``),
    and last the mean logits, of the spiking network on inputs ``x``. Layer by layer: with no
    output synapse a layer's spikes at step t depend on its inputs up to step t only, so every
    layer runs all its steps once its inputs' are known."""
    layers = layer_list(layers, len(model.hidden))
    ops, series = Ops(dtype), _input_series(x, dtype)
    means = {INPUT: series[INPUT]}
    for i, (stage, params) in enumerate(zip(model.hidden, layers)):
        currents = _input_currents(stage, series, steps, len(x), ops)
        series[i], means[i] = _fire(currents, steps, stage, params, dt, seed + i, keep=not _readout_only(model, i))
        del currents
        _release(model, series, i)
    return [means[i].numpy() for i in range(len(model.hidden))] + [_logits(model, means, len(x), ops).numpy()]


def channel_means(values, stage) -> np.ndarray:
    """Mean over samples (and positions) of each output channel of ``stage`` (float64)."""
    values = torch.as_tensor(values)
    return values.reshape(len(values), stage.channels, -1).mean(dim=(0, 2), dtype=torch.float64).numpy()


@torch.no_grad()
@one_thread()
def correct(model: ConvertedModel, layers: list, x: np.ndarray, steps: int, dt: float = 0.001,
            seed: int = 0, dtype=torch.float32, targets: list | None = None,
            x_val: np.ndarray | None = None, ops: Ops | None = None) -> tuple:
    """The calibrated ``layers`` with bias correction and potential initialisation for ``steps``
    steps, from calibration inputs ``x`` (training data only), and per layer the mean absolute
    channel error before and after (activation units), for the log.

    ``targets``: each hidden layer's DNN channel means on ``x`` (:func:`channel_means` of
    :func:`activations`), if already computed. ``x_val``: inputs that ride along, never informing
    the correction: each layer runs on them once corrected, and the corrected network's mean logits
    on them are returned third. ``ops``: the :class:`Ops` (of ``dtype``) to use, e.g. one shared by
    several corrections of the model."""
    layers = layer_list(layers, len(model.hidden))  # a new list: its entries are replaced below
    ops = ops or Ops(dtype)
    if targets is None:
        targets = [channel_means(a, stage) for a, stage in zip(activations(model, x, ops), model.hidden)]
    series, report = _input_series(x, dtype), []
    means = {INPUT: series[INPUT]}
    if x_val is not None:
        val_series = _input_series(x_val, dtype)
        val_means = {INPUT: val_series[INPUT]}
    for i, stage in enumerate(model.hidden):
        currents = _input_currents(stage, series, steps, len(x), ops)
        first = slice(None, None, stage.size_out // stage.channels)  # one neuron of each channel
        keep = not _readout_only(model, i)

        def run(currents, keep=False):
            out, mean = _fire(currents, steps, stage, layers[i], dt, seed + i, keep)
            return out, mean, channel_means(mean, stage) - targets[i]

        before = run(currents)[2]
        bias = layers[i].per_neuron(stage, "channel_bias", 0.0)[first]
        layers[i] = replace(layers[i], channel_bias=[float(b) for b in bias - before])
        left = run(currents)[2]
        params = layers[i]
        rs = (params.rate_scale * params.per_neuron(stage, "channel_scales", 1.0))[first]
        start = params.per_neuron(stage, "channel_voltage", 0.5 if params.initial_voltage == "half" else 0.0)[first]
        layers[i] = replace(params, channel_voltage=[float(v) for v in start - left * steps * rs * dt])
        series[i], means[i], after = run(currents, keep)
        del currents
        _release(model, series, i)
        if x_val is not None:
            val_currents = _input_currents(stage, val_series, steps, len(x_val), ops)
            val_series[i], val_means[i] = _fire(val_currents, steps, stage, layers[i], dt, seed + i, keep)
            del val_currents
            _release(model, val_series, i)
        report.append({"layer": stage.name, "error_before": float(np.abs(before).mean()),
                       "error_after_bias": float(np.abs(left).mean()), "error_after": float(np.abs(after).mean())})
    if x_val is None:
        return layers, report
    return layers, report, _logits(model, val_means, len(x_val), ops).numpy()
