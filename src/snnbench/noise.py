"""Evaluation-time Gaussian noise, drawn the same way for every family of model.

A :class:`NoiseSpec` says how much noise (``std``), where (``position``: the network ``input``, a
hidden layer's input current ``pre``, or its output ``post``) and, for spiking networks, whether each
time step gets a fresh draw (``per_step``) or one draw is held for all steps (``frozen``). Draws are
keyed by (seed, layer, time step, block of 100 samples), so a sample gets the same noise in any batch
layout, and a DNN (one step, 0) gets the draw a spiking network gets at step 0 or when frozen. Every
engine takes its noise from here, so the frozen rule (:meth:`NoiseSpec.step`) is here only.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from snnbench.config import check_choices, option
from snnbench.errors import ConfigError

ADDED_AT = ("input", "pre", "post")  # where noise is added: the input, a layer's input current, its output
POSITIONS = ("none", *ADDED_AT)
NOISE_MODES = ("per_step", "frozen")
BLOCK = 100


def _layer_id(layer: str) -> int:
    return int.from_bytes(hashlib.sha256(layer.encode()).digest()[:4], "little")


@dataclass(frozen=True)
class NoiseSpec:
    std: float = option(0.0, "Gaussian noise standard deviation", float, flag="noise_std")
    position: str = option("none", "input, pre (a hidden layer's input current) or post (its output); none",
                           choices=POSITIONS, flag="noise_position")
    mode: str = option("per_step", "SNNs: frozen = one draw held for all steps (the DNN's single draw: like with "
                                   "like), per_step = a fresh draw each time step (averaged away over the steps)",
                       choices=NOISE_MODES, flag="noise_mode")
    seed: int = option(0, "seed of the noise draws", int, flag="noise_seed")

    def __post_init__(self):
        check_choices(self)
        if not np.isfinite(self.std) or self.std < 0:
            raise ConfigError(f"noise std must be a finite number >= 0, got {self.std}")

    @property
    def active(self) -> bool:
        return self.position != "none" and self.std > 0

    def applies_to(self, position: str) -> bool:
        return self.active and self.position == position

    def step(self, step: int) -> int:
        """The time step whose draw ``step`` gets: its own (``per_step``), step 0's (``frozen``)."""
        return 0 if self.mode == "frozen" else step

    def unit(self, layer: str, start: int, n: int, features: int, step: int = 0) -> np.ndarray:
        """The unit-std draw (float32, ``(n, features)``) for samples ``start .. start + n`` of a
        layer at ``step``: what :meth:`draw` scales, and a cache of draws (the grid's) keeps."""
        step = self.step(step)
        first, last = start // BLOCK, (start + n - 1) // BLOCK
        blocks = [np.random.default_rng([self.seed, _layer_id(layer), step, b]).standard_normal(
            (BLOCK, features), dtype=np.float32) for b in range(first, last + 1)]
        offset = start - first * BLOCK
        return np.concatenate(blocks)[offset: offset + n]

    def draw(self, layer: str, start: int, n: int, features: int, step: int = 0) -> np.ndarray:
        """Noise (float32, ``(n, features)``) for samples ``start .. start + n`` of a layer."""
        if not self.active:
            return np.zeros((n, features), dtype=np.float32)
        return self.std * self.unit(layer, start, n, features, step)

    def draws(self, layer: str, start: int, n: int, features: int, steps: int) -> np.ndarray:
        """The noise of steps ``0 .. steps - 1`` (float32, ``(n, steps, features)``)."""
        if self.mode == "frozen":
            return np.repeat(self.draw(layer, start, n, features)[:, None, :], steps, axis=1)
        return np.stack([self.draw(layer, start, n, features, step=t) for t in range(steps)], axis=1)
