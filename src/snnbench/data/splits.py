"""Deterministic train / validation split."""

import numpy as np

from snnbench.errors import ConfigError


def validation_split(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): a seeded permutation, the last ``fraction`` held out."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val:])
