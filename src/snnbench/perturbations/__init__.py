"""Controlled perturbations, one registered family per module, applied the same way for every engine.

A family is a frozen dataclass with its parameters and ``levels`` (its severities, bits, fractions or
stds; ``quick``: the quick profile's subset), registered by name (``@register(name)``) and built with
``build(name, **params)``. Its ``kind`` says where it acts:

* ``noise``: Gaussian noise inside the network (:mod:`~snnbench.perturbations.gaussian`, a
  :class:`~snnbench.noise.NoiseSpec` per level), which each engine draws itself;
* ``input``: the samples are corrupted before any engine sees them
  (:mod:`~snnbench.perturbations.image_noise`, ``image_blur``, ``image_geometry``, ``image_overlay``:
  MNIST-C's corruptions; ``audio``: SNR noise, time shift, SpecAugment's masks), so every engine gets the
  very same corrupted sample;
* ``weights``: the ONNX file's weights are perturbed (:mod:`~snnbench.perturbations.weight_faults`), so
  ONNX Runtime and the converter read the same perturbed weights;
* ``neurons``: faulty neurons (:mod:`~snnbench.perturbations.neuron_faults`: saturated, varied thresholds,
  both written into the weights, and spikes deleted in the simulation), the same neurons in every engine;
* ``attack``: adversarial samples crafted white-box on a source model (:mod:`~snnbench.perturbations.attacks`:
  FGSM and PGD on the DNN or, through a named surrogate gradient, on the snntorch SNN), given to every
  engine that runs that model.

Every draw is keyed (:func:`keyed_rng`) by the seed, the family, the level and the sample's index (or the
weight's name), never by the batch layout or the engine. A family checks what it is given
(:meth:`Perturbation.check`) and refuses, in one line, data or an engine it has no meaning for.
"""

import hashlib
import importlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from snnbench.errors import ConfigError, UnsupportedModelError

KINDS = ("noise", "input", "weights", "neurons", "attack")
# attacks: <method>_<norm> crafted on the DNN, <method>_<norm>_snn_<surrogate> on the snntorch SNN
ATTACKS = tuple(f"{method}_{norm}{source}" for source in ("", "_snn_atan", "_snn_fast_sigmoid")
                for method in ("fgsm", "pgd") for norm in ("linf", "l2"))
# family -> module
MODULES = {"gaussian": "gaussian",
           **dict.fromkeys(("shot_noise", "impulse_noise"), "image_noise"),
           **dict.fromkeys(("glass_blur", "motion_blur"), "image_blur"),
           **dict.fromkeys(("shear", "scale", "rotate", "translate"), "image_geometry"),
           **dict.fromkeys(("brightness", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges"),
                           "image_overlay"),
           **dict.fromkeys(("quantise", "quantise_channel", "weight_noise", "stuck_at_zero", "dead_neurons"),
                           "weight_faults"),
           **dict.fromkeys(("saturated_neurons", "threshold_variation", "spike_deletion"), "neuron_faults"),
           **dict.fromkeys(("snr_noise", "time_shift", "time_mask", "freq_mask"), "audio"),
           **dict.fromkeys(ATTACKS, "attacks")}
_FAMILIES = {}


def register(name: str):
    """Class decorator: the family ``name`` (a frozen dataclass subclassing :class:`Perturbation`)."""
    def decorate(cls):
        cls.name = name
        _FAMILIES[name] = cls
        return cls
    return decorate


def names() -> list:
    """Every family, in the registry's order."""
    return list(MODULES)


def family_class(name: str):
    if name not in MODULES:
        raise ConfigError(f"unknown perturbation {name!r}; use one of {', '.join(MODULES)} (or all)")
    importlib.import_module(f"snnbench.perturbations.{MODULES[name]}")
    return _FAMILIES[name]


def build(name: str, **params) -> "Perturbation":
    """The family ``name`` with ``params`` (e.g. ``levels=(1, 3)``) instead of its defaults."""
    return family_class(name)(**params)


def _id(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def level_key(level: float) -> int:
    """A level as an integer key (levels are read to 1e-6)."""
    return int(round(float(level) * 1e6))


def keyed_rng(seed: int, family: str, level: float, *keys) -> np.random.Generator:
    """The random generator of one draw: (seed, family, level, keys...), each key an int or a name."""
    parts = [_id(k) if isinstance(k, str) else int(k) for k in keys]
    # a negative level (an SNR in dB) as its unsigned 64-bit pattern: the generator takes no negative key
    return np.random.default_rng([int(seed), _id(family), level_key(level) % 2 ** 64, *parts])


@dataclass(frozen=True)
class Target:
    """What a family is applied to: an engine, the shape of one of its samples, and its model."""
    engine: str
    sample_shape: tuple
    modality: str = ""
    model: str = ""  # the sweep's model: conversion-mlp, multimodal or user


@dataclass(frozen=True)
class Perturbation:
    """A family of perturbations; subclasses set ``kind``, ``level_name``, ``levels`` and ``quick``."""
    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    level_name: ClassVar[str] = "level"
    engines: ClassVar[tuple] = ()  # the engines it applies to; () = every engine

    def __post_init__(self):
        levels = tuple(self.levels)
        if not levels or not all(np.isfinite(v) for v in levels):
            raise ConfigError(f"{self.name}: levels must be finite numbers, got {self.levels}")
        bad = [v for v in levels if not self.valid_level(v)]
        if bad:
            raise ConfigError(f"{self.name}: {self.level_name} {bad[0]:g} is out of range; use {self.level_help}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "quick", tuple(v for v in self.quick if v in levels) or levels)

    level_help: ClassVar[str] = ""

    def valid_level(self, level: float) -> bool:
        return True

    def profile_levels(self, profile: str) -> tuple:
        """The levels a profile sweeps: ``quick`` on the quick profile, every level otherwise."""
        return self.quick if profile == "quick" else self.levels

    def check(self, target: Target) -> None:
        """Refuse, in one line, an engine this family has no meaning for."""
        if self.engines and target.engine not in self.engines:
            raise UnsupportedModelError(f"perturbation {self.name} applies to {', '.join(self.engines)}, not to "
                                        f"engine {target.engine}")
