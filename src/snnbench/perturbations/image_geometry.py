"""Affine distortions about the image's centre: shear, scale (shrinking the digit), rotate and translate,
with MNIST-C's own severity tables (MNIST-C samples shear and rotate at severity 2, scale and translate
at 3). Each output pixel reads the input at the transformed position, bilinearly, zero outside (as
MNIST-C's warp does)."""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from snnbench.perturbations import register
from snnbench.perturbations.images import SEVERITIES, ImageCorruption


def warp(image: np.ndarray, matrix: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
    """``image`` sampled at ``matrix @ (x, y) + shift`` about its centre (x: column, y: row)."""
    centre = (np.array(image.shape) - 1) / 2.0           # (row, col)
    rowcol = np.array([[matrix[1, 1], matrix[1, 0]], [matrix[0, 1], matrix[0, 0]]])
    offset = centre - rowcol @ centre + np.array([shift[1], shift[0]])
    return ndimage.affine_transform(image, rowcol, offset, order=1, mode="constant", cval=0.0)


def _sign(rng) -> int:
    return int(rng.choice((-1, 1)))


@register("shear")
@dataclass(frozen=True)
class Shear(ImageCorruption):
    """A horizontal shear by ``c`` radians, in a random direction."""
    table = (0.2, 0.4, 0.6, 0.8, 1.0)
    levels: tuple = SEVERITIES
    quick: tuple = (2,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        c = _sign(rng) * self.parameter(level)
        return warp(image, np.array([[1.0, -np.sin(c)], [0.0, np.cos(c)]]))


@register("rotate")
@dataclass(frozen=True)
class Rotate(ImageCorruption):
    """A rotation by ``c`` radians, in a random direction."""
    table = (0.2, 0.4, 0.6, 0.8, 1.0)
    levels: tuple = SEVERITIES
    quick: tuple = (2,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        c = _sign(rng) * self.parameter(level)
        return warp(image, np.array([[np.cos(c), -np.sin(c)], [np.sin(c), np.cos(c)]]))


@register("scale")
@dataclass(frozen=True)
class Scale(ImageCorruption):
    """The digit shrunk by a factor ``1 / c`` (0.9 down to 0.5 of its size)."""
    table = (1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5)
    levels: tuple = SEVERITIES
    quick: tuple = (3,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        return warp(image, np.eye(2) * self.parameter(level))


@register("translate")
@dataclass(frozen=True)
class Translate(ImageCorruption):
    """A shift by ``c`` pixels along each axis, each in a random direction."""
    table = (1, 2, 3, 4, 5)
    levels: tuple = SEVERITIES
    quick: tuple = (3,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        c = self.parameter(level)
        return warp(image, np.eye(2), (_sign(rng) * c, _sign(rng) * c))
