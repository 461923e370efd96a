"""Blur: glass blur (a blurred image whose pixels are locally shuffled, as through frosted glass) and motion
blur (a camera moving along a line). Severity tables: ImageNet-C's, as MNIST-C uses them (MNIST-C samples
both at severity 1)."""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from snnbench.perturbations import register
from snnbench.perturbations.images import SEVERITIES, ImageCorruption


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur with the border pixels repeated outward (as MNIST-C's blur takes the border)."""
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=4.0)


@register("glass_blur")
@dataclass(frozen=True)
class GlassBlur(ImageCorruption):
    """Blur (``sigma``), quantise to 8 bits, then ``iterations`` passes in which each inner pixel, with
    probability 1/2, swaps with one up to ``max_delta`` pixels away; blur again."""
    table = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max_delta, iterations
    levels: tuple = SEVERITIES
    quick: tuple = (1,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        sigma, delta, iterations = self.parameter(level)
        pixels = np.floor(gaussian_blur(image, sigma) * 255)
        inner = np.arange(len(pixels) - delta, delta, -1)  # the pixels visited, bottom right first
        for _ in range(iterations):
            swaps = rng.random((len(inner), len(inner))) < 0.5
            shifts = rng.integers(-delta, delta, size=(len(inner), len(inner), 2))  # (column, row)
            for i, j in zip(*np.nonzero(swaps)):
                here, there = (inner[i], inner[j]), (inner[i] + shifts[i, j, 1], inner[j] + shifts[i, j, 0])
                pixels[here], pixels[there] = pixels[there], pixels[here]
        return gaussian_blur(pixels / 255, sigma)


@register("motion_blur")
@dataclass(frozen=True)
class MotionBlur(ImageCorruption):
    """Each pixel the weighted mean of the pixels behind it along a random direction within 45 degrees of
    the horizontal: ``2 * radius + 1`` taps at whole-pixel offsets, weights of a half Gaussian (``sigma``),
    as ImageMagick's motion blur (MNIST-C's) draws them; pixels beyond the border repeat the border's."""
    table = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma (pixels)
    levels: tuple = SEVERITIES
    quick: tuple = (1,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        radius, sigma = self.parameter(level)
        angle = np.deg2rad(rng.uniform(-45, 45))
        taps = np.arange(2 * radius + 1)
        weights = np.exp(-taps ** 2 / (2.0 * sigma ** 2))
        weights /= weights.sum()
        d_col, d_row = np.rint(taps * np.cos(angle)).astype(int), np.rint(taps * np.sin(angle)).astype(int)
        pad = len(taps)
        padded = np.pad(image, pad, mode="edge")
        side = len(image)
        return sum(w * padded[pad + r: pad + r + side, pad + c: pad + c + side]
                   for w, r, c in zip(weights, d_row, d_col))
