"""Changes of tone and things drawn over the digit: brightness, fog, spatter (ImageNet-C's severity tables,
as MNIST-C uses them; MNIST-C samples brightness and fog at severity 5, spatter at 4), and MNIST-C's own
stripe, dotted line, zigzag and Canny edges, which it defines at one strength (one level here, 1)."""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from snnbench.perturbations import register
from snnbench.perturbations.image_blur import gaussian_blur
from snnbench.perturbations.images import SEVERITIES, ImageCorruption

LINE_WIDTH = 2.3  # a drawn line's half width in pixels (MNIST-C's)


@register("brightness")
@dataclass(frozen=True)
class Brightness(ImageCorruption):
    """``c`` added to every pixel (for a grey image, MNIST-C's raise of the HSV value is exactly this)."""
    table = (0.1, 0.2, 0.3, 0.4, 0.5)
    levels: tuple = SEVERITIES
    quick: tuple = (5,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        return image + self.parameter(level)


def plasma_fractal(rng: np.random.Generator, size: int = 256, decay: float = 3.0) -> np.ndarray:
    """A diamond-square height map (``size`` a power of two) scaled to [0, 1]: each pass sets the midpoints
    of squares, then of diamonds, to the mean of their corners plus uniform noise whose range shrinks by
    ``decay`` per pass (the fog of ImageNet-C and MNIST-C)."""
    heights = np.zeros((size, size))
    step, wobble = size, 100.0

    def mean_plus_noise(total):
        return total / 4 + wobble * rng.uniform(-wobble, wobble, total.shape)

    while step >= 2:
        half = step // 2
        corners = heights[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        heights[half:size:step, half:size:step] = mean_plus_noise(square)
        centres = heights[half:size:step, half:size:step]
        corners = heights[0:size:step, 0:size:step]
        row_sum = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        heights[0:size:step, half:size:step] = mean_plus_noise(row_sum)
        col_sum = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        heights[half:size:step, 0:size:step] = mean_plus_noise(col_sum)
        step //= 2
        wobble /= decay
    heights -= heights.min()
    return heights / heights.max()


@register("fog")
@dataclass(frozen=True)
class Fog(ImageCorruption):
    """A plasma-fractal haze of strength ``c`` (roughness ``decay``) added, the result rescaled so the
    image's brightest value keeps its share."""
    table = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, decay
    levels: tuple = SEVERITIES
    quick: tuple = (5,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        strength, decay = self.parameter(level)
        brightest = image.max()
        side = len(image)
        hazy = image + strength * plasma_fractal(rng, decay=decay)[:side, :side]
        return hazy * brightest / (brightest + strength)


@register("spatter")
@dataclass(frozen=True)
class Spatter(ImageCorruption):
    """Mud: Gaussian noise (mean, std) blurred (``sigma``) and thresholded into blobs, their mask blurred
    (``mask_sigma``) and kept above 0.8, the blobs painted in grey 63/255."""
    table = ((0.65, 0.3, 4, 0.69, 0.6), (0.65, 0.3, 3, 0.68, 0.6), (0.65, 0.3, 2, 0.68, 0.5),
             (0.65, 0.3, 1, 0.65, 1.5), (0.67, 0.4, 1, 0.65, 1.5))  # mean, std, sigma, threshold, mask_sigma
    levels: tuple = SEVERITIES
    quick: tuple = (4,)  # MNIST-C's severity

    def corrupt(self, image, level, rng):
        mean, std, sigma, threshold, mask_sigma = self.parameter(level)
        liquid = gaussian_blur(rng.normal(mean, std, image.shape), sigma)
        mask = gaussian_blur((liquid > threshold).astype(float), mask_sigma)
        mask[mask < 0.8] = 0
        return image * (1 - mask) + 63 / 255 * mask


@register("stripe")
@dataclass(frozen=True)
class Stripe(ImageCorruption):
    """The leftmost and rightmost quarters of the image (7 columns each at 28) inverted."""
    levels: tuple = (1,)
    quick: tuple = (1,)

    def corrupt(self, image, level, rng):
        band = len(image) // 4
        image[:, :band] = 1 - image[:, :band]
        image[:, -band:] = 1 - image[:, -band:]
        return image


def line(side: int, c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """A line from (column c0, row r0) to (c1, r1) drawn with a log fall-off over LINE_WIDTH pixels of
    vertical distance (MNIST-C's stroke), nothing outside the columns it spans."""
    if c1 == c0:
        return np.zeros((side, side))
    cols, rows = np.meshgrid(np.arange(side, dtype=float), np.arange(side, dtype=float))
    distance = np.clip(np.abs(rows - (r0 + (r1 - r0) / (c1 - c0) * (cols - c0))), 0, LINE_WIDTH - 1e-10)
    stroke = np.clip(np.log(1 - distance / LINE_WIDTH) + 1, 0, 1)
    stroke[:, :int(np.floor(c0))] = 0
    stroke[:, int(np.ceil(c1)):] = 0
    return stroke


@register("dotted_line")
@dataclass(frozen=True)
class DottedLine(ImageCorruption):
    """A line across the image between two random rows, drawn only in every other pair of columns."""
    levels: tuple = (1,)
    quick: tuple = (1,)

    def corrupt(self, image, level, rng):
        side = len(image)
        r0, r1 = rng.integers(0, side - 1, size=2)
        stroke = line(side, 0, r0, side - 1, r1)
        stroke[:, (np.arange(side) // 2) % 2 == 0] = 0
        return image + stroke


@register("zigzag")
@dataclass(frozen=True)
class Zigzag(ImageCorruption):
    """A zigzag (teeth 2 pixels long and 2 high) from column 2 to 25 along a random slightly tilted line."""
    levels: tuple = (1,)
    quick: tuple = (1,)
    tooth: float = 2.0

    def corrupt(self, image, level, rng):
        side, a, b = len(image), self.tooth, self.tooth
        c0, c1 = 2, side - 3
        r0 = rng.integers(0, side - 1)
        r1 = r0 + rng.integers(-5, 5)
        theta = np.arctan((r1 - r0) / (c1 - c0))
        length = (c1 - c0) / np.cos(theta)
        points = [(0.0, 0.0)]
        teeth = int((length - a) // (2 * a)) + 1
        for i in range(teeth):
            points.append(((2 * i + 1) * a, (-1) ** i * b))
        whole = 2 * a * (length // (2 * a))
        if length != whole:  # the last stretch, to the line's end
            points.append((length, points[-1][1] / (2 * (length - whole))))
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        cols, rows = rotation @ np.array(points).T
        cols, rows = cols + c0, rows + r0
        for i in range(1, len(cols)):
            image = np.clip(image + line(side, cols[i - 1], rows[i - 1], cols[i], rows[i]), 0, 1)
        return image


@register("canny_edges")
@dataclass(frozen=True)
class CannyEdges(ImageCorruption):
    """The digit replaced by its Canny edges (white on black): Gaussian smoothing (``sigma``), Sobel
    gradients, thinning to local maxima across the edge, and hysteresis: edge pixels above ``low`` kept
    where connected to one above ``high`` (scikit-image's defaults for images in [0, 1], MNIST-C's)."""
    levels: tuple = (1,)
    quick: tuple = (1,)
    sigma: float = 1.0
    low: float = 0.1
    high: float = 0.2

    def corrupt(self, image, level, rng):
        smooth = ndimage.gaussian_filter(image, self.sigma, mode="constant")
        g_row, g_col = ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)
        magnitude = np.hypot(g_row, g_col)
        # the neighbour pair across the edge, by the gradient's direction in 45-degree sectors
        sector = (np.round(np.arctan2(g_row, g_col) / (np.pi / 4)) % 4).astype(int)
        padded = np.pad(magnitude, 1)
        side = len(image)
        thin = np.zeros_like(magnitude, dtype=bool)
        for k, (dr, dc) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
            ahead = padded[1 + dr: 1 + dr + side, 1 + dc: 1 + dc + side]
            behind = padded[1 - dr: 1 - dr + side, 1 - dc: 1 - dc + side]
            thin |= (sector == k) & (magnitude >= ahead) & (magnitude >= behind)
        border = np.zeros_like(thin)
        border[1:-1, 1:-1] = True
        candidate = thin & border & (magnitude >= self.low)
        labels, count = ndimage.label(candidate, structure=np.ones((3, 3)))
        strong = np.unique(labels[candidate & (magnitude >= self.high)])
        return np.isin(labels, strong[strong > 0]).astype(float)
