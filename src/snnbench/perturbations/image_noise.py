"""Sensor noise: shot (Poisson photon counts) and impulse (salt and pepper) noise, MNIST-C's severity
tables (ImageNet-C's; MNIST-C samples shot noise at severity 5 and impulse noise at 4)."""

from dataclasses import dataclass

import numpy as np

from snnbench.perturbations import register
from snnbench.perturbations.images import SEVERITIES, ImageCorruption


@register("shot_noise")
@dataclass(frozen=True)
class ShotNoise(ImageCorruption):
    """Each pixel a Poisson count of ``c`` times its intensity, divided by ``c`` (fewer photons: noisier)."""
    table = (60, 25, 12, 5, 3)
    levels: tuple = SEVERITIES
    quick: tuple = (5,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        c = self.parameter(level)
        return rng.poisson(image * c) / c


@register("impulse_noise")
@dataclass(frozen=True)
class ImpulseNoise(ImageCorruption):
    """A fraction ``c`` of the pixels replaced, half by white (salt), half by black (pepper)."""
    table = (0.03, 0.06, 0.09, 0.17, 0.27)
    levels: tuple = SEVERITIES
    quick: tuple = (4,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        hit = rng.random(image.shape) < self.parameter(level)
        salt = rng.random(image.shape) < 0.5
        return np.where(hit, salt.astype(float), image)
