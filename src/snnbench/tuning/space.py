"""The search space: per hidden layer, the neuron parameters around the calibrated setting.

Gain, bias scale and firing-rate scale are searched as factors on the calibrated values
(trial parameters ``layer{i}.gain_factor`` etc.), the bias offset as a current added to the
calibrated one (in activation units, as the bias), the output synapse and LIF time constants as
values. The calibrated setting itself is every factor 1, offset 0, no extra filtering.
"""

import argparse
from dataclasses import dataclass

import optuna

from snnbench.config import option
from snnbench.errors import ConfigError

FACTORS = ("gain", "bias_scale", "rate_scale")  # searched as factors on the calibrated value
PARAMETERS = ("gain", "bias_scale", "bias_offset", "rate_scale", "synapse", "tau_rc", "tau_ref")
Interval = tuple[float, float] | None  # (low, high), or None: not tuned
BOUNDS = "search bounds per hidden layer, around the calibrated setting (LOW,HIGH, or off to keep the calibrated value)"


def trial_key(layer: int, name: str) -> str:
    return f"layer{layer}.{name}_factor" if name in FACTORS else f"layer{layer}.{name}"


def bounds(text: str):
    """'LOW,HIGH' -> (low, high); 'off' -> None (parameter not tuned)."""
    if text.strip().lower() == "off":
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH or off, got {text!r}") from None
    return (low, high)


def _bounds(default, what: str):
    return option(default, what, bounds, group=BOUNDS)


@dataclass(frozen=True)
class SearchSpace:
    """Bounds per hidden layer; ``None`` leaves that parameter at its calibrated value."""
    gain: Interval = _bounds((0.5, 2.0), "factor on the calibrated gain, log scale")
    bias_scale: Interval = _bounds((0.5, 1.5), "factor on the calibrated bias scale")
    bias_offset: Interval = _bounds((-0.25, 0.25), "added to the calibrated bias (activation units)")
    rate_scale: Interval = _bounds((0.25, 4.0), "factor on the calibrated rate scale, log scale")
    synapse: Interval = _bounds(None, "output synapse in seconds; each trial may also choose no filtering, log scale "
                                      "(e.g. 0.0001,0.01)")
    tau_rc: Interval = _bounds(None, "LIF membrane time constant (s), LIF only, log scale (e.g. 0.002,0.2)")
    tau_ref: Interval = _bounds(None, "LIF refractory period (s), LIF only, log scale (e.g. 0.0001,0.004)")

    LOG = ("gain", "rate_scale", "synapse", "tau_rc", "tau_ref")

    def check(self):
        for name in self.tuned("lif"):  # every parameter with bounds
            low, high = getattr(self, name)
            if not low < high:
                raise ConfigError(f"search bounds for {name} must be LOW,HIGH with LOW < HIGH, got {low},{high}")
            if name in self.LOG and low <= 0:
                raise ConfigError(f"search bounds for {name} are log-scale and must be > 0, got {low},{high}")

    def tuned(self, neuron: str) -> list[str]:
        """The searched parameters: those with bounds (the time constants for LIF neurons only)."""
        return [n for n in PARAMETERS if getattr(self, n) is not None and (neuron == "lif" or not n.startswith("tau"))]

    def suggest(self, trial: optuna.Trial, n_hidden: int, neuron: str) -> dict:
        """Ask the trial for every tuned parameter; returns the trial's parameter dict."""
        for i in range(n_hidden):
            for name in self.tuned(neuron):
                if name == "synapse" and not trial.suggest_categorical(f"layer{i}.filtered", [False, True]):
                    continue
                trial.suggest_float(trial_key(i, name), *getattr(self, name), log=name in self.LOG)
        return dict(trial.params)

    def untuned_params(self, base: list[dict], neuron: str) -> dict:
        """The trial parameters that reproduce the calibrated setting ``base`` (one dict per layer)."""
        params = {}
        for i, layer in enumerate(base):
            for name in self.tuned(neuron):
                if name == "synapse":
                    params[f"layer{i}.filtered"] = layer["synapse"] is not None
                    if layer["synapse"] is None:
                        continue
                params[trial_key(i, name)] = 1.0 if name in FACTORS else 0.0 if name == "bias_offset" else layer[name]
        return params


def layers_from_params(params: dict, base: list[dict]) -> list[dict]:
    """Per-layer settings: the calibrated ``base`` changed by a trial's parameters."""
    layers = [dict(layer) for layer in base]
    for i, layer in enumerate(layers):
        for name in (n for n in PARAMETERS if trial_key(i, n) in params):
            value = params[trial_key(i, name)]
            if name in FACTORS:
                layer[name] = layer[name] * value
            elif name == "bias_offset":
                layer[name] = layer[name] + value
            else:
                layer[name] = value
        if params.get(f"layer{i}.filtered") is False:
            layer["synapse"] = None
    return layers
