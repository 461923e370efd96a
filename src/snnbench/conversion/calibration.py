"""Data-based calibration of a converted network: each hidden layer's firing-rate scale from its
ReLU activations on training data (Rueckauer et al. 2017, as SNN Toolbox and SpikingJelly's ann2snn).

A hidden neuron fires ``rate_scale * a`` Hz for activation ``a`` (:mod:`snnbench.conversion.nengo_net`).
Calibration takes a percentile ``p`` (99.9 by default; ``max``) of each layer's positive activations
on a seeded subset of the TRAINING split and sets ``rate_scale = target_rate / (p * dt)``, so that
``p`` fires ``target_rate`` spikes per step (stronger activations fire several spikes in a step).

* ``scales="channel"``: each output channel (each neuron of a dense layer) gets its own percentile
  (Kim et al. 2020, Spiking-YOLO); a Clip(0, a) layer keeps one scale, from ``min(p, a)``.
* ``rates="balanced"``: layer k's rate scale times ``m_k = c * A_k ** (-1/3)``, ``A_k`` its expected
  spikes per step at uniform rates and ``c`` such that ``sum(m_k A_k) = sum(A_k)``: this minimises the
  summed rounding noise ``sum(1 / m_k^2)`` at the same spike count (the ResNet-style network at 4
  steps: 5.1% instead of 7.1% of MNIST validation images classified unlike the DNN, 3% more spikes).
  It does not help every network: ``rates="validated"`` (the corrected method's) picks per step count,
  on validation images, the fewest spikes that keep the DNN's accuracy: uniform, then balanced rates at
  the calibrated rate, then at ``RATE_FACTORS`` times it, the first whose corrected network scores within
  ``VALIDATION_TOLERANCE`` of the DNN (else the best). Few steps need faster firing: on three deep batch-
  normalised MNIST CNNs at 8 steps, 1x loses 0.1-11 points of validation accuracy, 4x at most 0.1.

Spiking neurons start at half the threshold, so that a spike count is the rate rounded, not floored
(reference MLP, 4 steps: 0.15 instead of 0.5 to 0.7 points of loss).

Conversion methods (``snnbench convert --method``): ``reference`` (the reference study's: LIF, gain 1,
the ONNX biases, rate scale 1); ``calibrated`` (IF with reset by subtraction, or LIF through
:func:`layer_params`); ``corrected`` (calibrated, then :mod:`snnbench.conversion.correction`);
``tuned`` (an Optuna study's best setting, :mod:`snnbench.tuning`).
"""

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from snnbench.config import check_choice, check_choices, option, positive
from snnbench.errors import SnnbenchError
from snnbench.conversion import correction
from snnbench.conversion.nengo_net import INITIAL_VOLTAGES, SPIKING_NEURONS, LayerParams, params_document

METHODS = ("reference", "calibrated", "corrected", "tuned")
SCALES = ("channel", "layer")  # a rate scale per output channel (per neuron of a dense layer), or per layer
RATES = ("uniform", "balanced")  # every layer at target_rate, or the spikes shared out between layers
RATE_CHOICES = RATES + ("validated",)  # validated: per step count, the fewest spikes that keep the DNN's accuracy
RATE_FACTORS = (1.0, 2.0, 4.0)  # validated: the rates tried, times the calibrated rate (more spikes per step)
VALIDATION_TOLERANCE = 0.005  # validated: a setting within this (fraction) of the DNN's validation accuracy is kept
VALIDATION_FRACTION = 0.2  # the training split's seeded hold-out that tuning scores on


def percentile_value(text) -> float:
    """'max' -> 100, otherwise the number (checked by :class:`Calibration`)."""
    return 100.0 if isinstance(text, str) and text.strip().lower() == "max" else float(text)


@dataclass(frozen=True)
class Calibration:
    """How a calibrated conversion picks its rate scales (all of it is logged with the run)."""
    samples: int = option(1000, "calibration: training images (a seeded subset; never validation or test images) "
                                "whose activations set the rate scales", positive(int), flag="calibration_samples")
    percentile: float = option(99.9, "calibration: percentile of each layer's positive activations that fires "
                                     "--target-rate spikes per step (max = the largest)", percentile_value)
    target_rate: float = option(1.0, "calibration: spikes per step at that percentile (at most about 1)",
                                positive(float))
    neuron: str = option("if", "calibration: if (integrate-and-fire, signed membrane, reset by subtraction), "
                               "if-rectified (nengo's SpikingRectifiedLinear) or lif (linear rate mapping)",
                         choices=SPIKING_NEURONS)
    initial_voltage: str = option("half", "calibration: spiking neurons start at half the threshold, or nengo's "
                                          "uniform draw", choices=INITIAL_VOLTAGES)
    seed: int = 0                # draws the calibration subset
    scales: str = "layer"        # one rate scale per layer, or one per output channel
    rates: str = "uniform"       # every layer at target_rate, or balanced (the same expected spikes in all)

    def __post_init__(self):
        if self.samples < 1:
            raise SnnbenchError(f"--calibration-samples must be >= 1, got {self.samples}")
        if not 0 < self.percentile <= 100:
            raise SnnbenchError(f"--percentile must be in (0, 100] or 'max', got {self.percentile}")
        if not 0 < self.target_rate <= 1.5:
            raise SnnbenchError(f"--target-rate must be in (0, 1.5] spikes per step (about 1 at most), "
                                f"got {self.target_rate}")
        check_choices(self)
        check_choice("scales", self.scales, SCALES)
        check_choice("rates", self.rates, RATE_CHOICES)


def calibration_inputs(x_train: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """A seeded subset of ``samples`` training inputs (all of them if there are fewer)."""
    if len(x_train) == 0:
        raise SnnbenchError("the calibration set is empty; give training data")
    if samples >= len(x_train):
        return np.asarray(x_train)
    return np.asarray(x_train)[np.sort(np.random.default_rng(seed).choice(len(x_train), samples, replace=False))]


def _mnist_train_split(seed: int):
    from snnbench.data import load_features, validation_split

    train = load_features("image", "train")
    return train, *validation_split(len(train), VALIDATION_FRACTION, seed)


def mnist_training_images(seed: int = 0) -> np.ndarray:
    """MNIST train without the seeded validation hold-out that ``snnbench tune`` scores on, as flat
    images in [0, 1]."""
    train, train_idx, _ = _mnist_train_split(seed)
    return train.x[train_idx]


def mnist_validation_images(seed: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded subset of ``samples`` images (and labels) of that hold-out (never calibration, never
    test images)."""
    train, _, val_idx = _mnist_train_split(seed)
    if samples < len(val_idx):
        val_idx = np.sort(np.random.default_rng(seed).choice(val_idx, samples, replace=False))
    return train.x[val_idx], np.asarray(train.y)[val_idx]


def hidden_activations(model, x: np.ndarray) -> list[np.ndarray]:
    """Each hidden population's ReLU activations ``(n, neurons)`` as the DNN computes them (float32
    arithmetic, :func:`snnbench.conversion.correction.activations`)."""
    return [a.numpy() for a in correction.activations(model, x)[:-1]]


def calibration_activations(model, x_train: np.ndarray, calibration: Calibration) -> tuple[np.ndarray, list]:
    """The calibration subset of ``x_train`` and each hidden population's activations on it, computed
    once for all the rate settings and step counts of a conversion (kept with the model, the last
    subset only)."""
    x = calibration_inputs(x_train, calibration.samples, calibration.seed)
    digest = hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()
    cache = model.__dict__.setdefault("_calibration_activations", {})
    if digest not in cache:
        cache.clear()
        cache[digest] = hidden_activations(model, x)
    return x, cache[digest]


def activation_scales(activations: list[np.ndarray], percentile: float) -> list[float]:
    """Per layer: the ``percentile`` of its positive activations (1.0 for a layer that never fires
    on the calibration set, which then has nothing to scale)."""
    return [float(np.percentile(a[a > 0], percentile)) if (a > 0).any() else 1.0 for a in activations]


def channel_factors(activations: list[np.ndarray], model, percentile: float) -> list:
    """Per hidden layer: each output channel's rate factor (each neuron's, for a flat layer), the layer's
    ``percentile`` of its positive activations over the channel's, or None for a Clip layer (its bound
    sets one rate for all); a channel that never fires on the calibration set keeps factor 1."""
    factors = []
    for layer, stage, overall in zip(activations, model.hidden, activation_scales(activations, percentile)):
        if stage.upper is not None:
            factors.append(None)
            continue
        per_channel = np.moveaxis(layer.reshape(len(layer), stage.channels, -1), 1, 0).reshape(stage.channels, -1)
        factors.append([overall / (float(np.percentile(c[c > 0], percentile)) if (c > 0).any() else overall)
                        for c in per_channel])
    return factors


def layer_params(scale: float, calibration: Calibration, dt: float, base: LayerParams = LayerParams()) -> LayerParams:
    """One hidden layer's neuron settings for activation scale ``scale`` (its percentile); the
    output synapse and LIF membrane time constant come from ``base``.

    IF: ``rate_scale = target_rate / (scale * dt)``, gain 1, the ONNX biases. LIF (no refractory
    period): its rate ``1 / (tau_rc * log(1 + 1 / (J - 1)))`` is close to ``(J - 1/2) / tau_rc``
    above threshold, so the current ``J = 1/2 + tau_rc * rate_scale * (W x + b)`` gives about the
    same ``rate_scale * a`` Hz (gain and bias scale tau_rc, bias offset ``1 / (2 rate_scale)``).
    """
    rate_scale = calibration.target_rate / (scale * dt)
    common = dict(rate_scale=rate_scale, initial_voltage=calibration.initial_voltage)
    if calibration.neuron != "lif":
        return replace(base, neuron=calibration.neuron, gain=1.0, bias_scale=1.0, bias_offset=0.0, **common)
    tau_rc = base.tau_rc
    return replace(base, neuron="lif", gain=tau_rc, bias_scale=tau_rc, bias_offset=0.5 / rate_scale, tau_ref=0.0,
                   **common)


def _per_channel(params: LayerParams, factors: list | None) -> LayerParams:
    """``params`` with per-channel rate scales ``rate_scale * factors`` (None: as they are); the LIF
    mapping's bias offset ``1 / (2 rate_scale)`` becomes each channel's own through ``channel_bias``."""
    if factors is None:
        return params
    if params.neuron != "lif":
        return replace(params, channel_scales=factors)
    f = np.asarray(factors)
    return replace(params, channel_scales=factors, channel_bias=list(0.5 * (1 - f) / (params.rate_scale * f)))


def expected_spikes(activations: list[np.ndarray], model, layers: list, dt: float) -> np.ndarray:
    """Per hidden layer: its expected spikes per step and input (rate ``rate_scale * a`` Hz per
    neuron, a Clip layer's bounded), from the activations of the calibration inputs."""
    totals = []
    for a, p, stage in zip(activations, layers, model.hidden):
        rates = p.rate_scale * p.per_neuron(stage, "channel_scales", 1.0) * dt * a
        totals.append(float(np.minimum(rates, p.max_spikes(stage, dt)).sum(axis=1).mean()))
    return np.asarray(totals)


def balanced_factors(spikes: np.ndarray) -> np.ndarray:
    """``m_k = c * A_k ** (-1/3)`` with ``sum(m_k A_k) = sum(A_k)``: the rate factors that minimise
    ``sum(1 / m_k^2)`` at the same expected spikes (a layer that never fires keeps factor 1)."""
    spikes = np.asarray(spikes, np.float64)
    active = spikes > 0
    factors = np.ones_like(spikes)
    if active.any():
        raw = spikes[active] ** (-1.0 / 3.0)
        factors[active] = raw * spikes[active].sum() / (raw * spikes[active]).sum()
    return factors


def with_rate_factor(params: LayerParams, factor: float) -> LayerParams:
    """``params`` firing ``factor`` times as fast (the LIF mapping's bias offset follows its rate scale)."""
    rate_scale = params.rate_scale * float(factor)
    offset = 0.5 / rate_scale if params.neuron == "lif" else params.bias_offset
    return replace(params, rate_scale=rate_scale, bias_offset=offset)


def calibrate(model, x_train: np.ndarray, calibration: Calibration = Calibration(), dt: float = 0.001,
              base: LayerParams = LayerParams(), report: dict | None = None) -> tuple[list[LayerParams], list[float]]:
    """Per hidden layer: (neuron settings, activation scale), from a calibration subset of
    ``x_train`` (training inputs only; the caller never passes test data). ``report``, if given,
    receives each layer's rate factor (``rate_factors``; 1 unless ``rates="balanced"``)."""
    if calibration.rates not in RATES:
        raise SnnbenchError(f"calibrate takes rates {' or '.join(RATES)}; 'validated' is chosen per step count "
                            "(snnbench.benchmarks.convert_eval.corrected_layers)")
    activations = calibration_activations(model, x_train, calibration)[1]
    scales = activation_scales(activations, calibration.percentile)
    scales = [min(s, stage.upper) if stage.upper is not None else s for s, stage in zip(scales, model.hidden)]
    layers = [layer_params(s, calibration, dt, base) for s in scales]
    channels = [None] * len(layers)  # per layer: its channels' rate factors (None: one rate scale)
    if calibration.scales == "channel":
        channels = channel_factors(activations, model, calibration.percentile)
    factors = np.ones(len(layers))
    if calibration.rates == "balanced":
        factors = balanced_factors(expected_spikes(activations, model, list(map(_per_channel, layers, channels)), dt))
        layers = [with_rate_factor(p, f) for p, f in zip(layers, factors)]
    if report is not None:
        report["rate_factors"] = [float(f) for f in factors]
    return list(map(_per_channel, layers, channels)), scales


def calibrated_document(model, x_train: np.ndarray, calibration: Calibration = Calibration(),
                        sim: dict | None = None, base: LayerParams = LayerParams()) -> dict:
    """The calibrated setting as a ``--params-json`` document, with where it came from."""
    sim, report = dict(sim or {}), {}
    layers, scales = calibrate(model, x_train, calibration, sim.get("dt", 0.001), base, report)
    return params_document(layers, sim, {"method": "calibrated", **asdict(calibration), "activation_scales": scales,
                                         **report, "calibration_inputs": min(calibration.samples, len(x_train))})


def reference_layers(base: LayerParams = LayerParams()) -> list[LayerParams]:
    """The reference study's conversion: LIF, gain 1, the ONNX biases, rate scale 1."""
    return [replace(base, neuron="lif", gain=1.0, bias_scale=1.0, bias_offset=0.0, rate_scale=1.0)]
