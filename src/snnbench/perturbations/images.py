"""What every image corruption shares: 28x28 grey images in [0, 1], one keyed draw per sample.

MNIST-C (Mu & Gilmer, 2019, arXiv:1906.02337) defines its corruptions on MNIST's 28x28 grey digits;
where it gives a table of five severities (most of them ImageNet-C's, Hendrycks & Dietterich, ICLR
2019) the families here take it, at the severity a level names (1-5); MNIST-C itself samples one
severity per corruption, noted in each family. Images are floats in [0, 1] (MNIST-C works in
[0, 255] and divides by 255 first), and every result is clipped to [0, 1].
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from snnbench.errors import DataError
from snnbench.perturbations import Perturbation, Target, keyed_rng

SIDE = 28
SEVERITIES = (1, 2, 3, 4, 5)


def grey_side(sample_shape: tuple) -> int | None:
    """The side of a square grey image of ``sample_shape`` ((H, W), (1, H, W) or H*W flat), or None."""
    shape = tuple(int(d) for d in sample_shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2 and shape[0] == shape[1]:
        return shape[0]
    return None


@dataclass(frozen=True)
class ImageCorruption(Perturbation):
    """A corruption of one 28x28 grey image; subclasses implement :meth:`corrupt`."""
    kind = "input"
    level_name = "severity"
    level_help = "severities 1 to 5"
    table: ClassVar[tuple] = ()  # MNIST-C's parameter per severity (empty: the family has one strength)

    def valid_level(self, level: float) -> bool:
        return level in (SEVERITIES if self.table else (1,))

    def parameter(self, level: float):
        return self.table[int(level) - 1]

    def check(self, target: Target) -> None:
        super().check(target)
        if grey_side(target.sample_shape) != SIDE:
            raise DataError(f"perturbation {self.name} corrupts 28x28 grey images (MNIST-C); the "
                            f"{target.modality or 'data set'}'s samples have shape {tuple(target.sample_shape)}")

    def corrupt(self, image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def apply(self, x: np.ndarray, sample_shape: tuple, level: float, seed: int, start: int = 0) -> np.ndarray:
        """Samples ``x`` (n, *sample_shape), float in [0, 1], corrupted at ``level``: sample ``i`` with
        the draw keyed by (seed, family, level, ``start + i``), its global index (float32, x's shape)."""
        self.check(Target("", sample_shape))
        images = np.asarray(x, np.float64).reshape(len(x), SIDE, SIDE)
        out = np.empty_like(images)
        for i, image in enumerate(images):
            out[i] = self.corrupt(image.copy(), level, keyed_rng(seed, self.name, level, start + i))
        return np.clip(out, 0, 1).astype(np.float32).reshape(np.shape(x))
