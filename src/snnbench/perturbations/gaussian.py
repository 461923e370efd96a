"""Gaussian noise inside the network: the suite's original perturbation, as a family of the registry.

Each level is a standard deviation; :meth:`GaussianNoise.spec` gives the :class:`~snnbench.noise.NoiseSpec`
every engine draws from (the network input, a hidden layer's input current ``pre`` or its output
``post``; one draw held over an SNN's steps, ``frozen``, or a fresh one each step). The noise sweep's
``--stds`` / ``--positions`` / ``--noise-mode`` fill it in, so its figures are those of the sweep before
the registry existed.
"""

from dataclasses import dataclass

from snnbench.noise import NoiseSpec
from snnbench.perturbations import Perturbation, register

STDS = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # the noise sweep's default stds (0: the same draws, unscaled)


@register("gaussian")
@dataclass(frozen=True)
class GaussianNoise(Perturbation):
    kind = "noise"
    level_name = "std"
    level_help = "stds >= 0"
    levels: tuple = STDS
    quick: tuple = STDS
    positions: tuple = ("input", "pre", "post")
    mode: str = "frozen"

    def valid_level(self, level: float) -> bool:
        return level >= 0

    def __post_init__(self):
        super().__post_init__()
        for position in self.positions:  # NoiseSpec refuses an unknown position or mode
            NoiseSpec(position=position, mode=self.mode)

    def spec(self, level: float, position: str, seed: int) -> NoiseSpec:
        """The noise of one level at ``position``, drawn from ``seed``."""
        return NoiseSpec(float(level), position, self.mode, seed)
