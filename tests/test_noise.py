"""NoiseSpec: draws depend on the sample, not on batching; frozen mode holds one draw; every\nstep's draws (draws) and the unit draw (unit) are draw's."""

import numpy as np
import pytest

from snnbench.errors import SnnbenchError
from snnbench.noise import NoiseSpec


def test_draws_do_not_depend_on_batching():
    spec = NoiseSpec(std=0.5, position="pre", seed=4)
    whole = spec.draw("layer0", 0, 350, 6, step=2)
    parts = np.concatenate([spec.draw("layer0", a, b - a, 6, step=2) for a, b in [(0, 7), (7, 230), (230, 350)]])
    assert np.array_equal(whole, parts)
    assert whole.std() == pytest.approx(0.5, rel=0.1)


def test_layers_steps_and_seeds_draw_differently():
    spec = NoiseSpec(std=1.0, position="post", seed=0)
    base = spec.draw("layer0", 0, 100, 4)
    assert not np.allclose(base, spec.draw("layer1", 0, 100, 4))
    assert not np.allclose(base, spec.draw("layer0", 0, 100, 4, step=1))
    assert not np.allclose(base, NoiseSpec(1.0, "post", seed=1).draw("layer0", 0, 100, 4))


def test_frozen_mode_holds_the_step_zero_draw():
    frozen = NoiseSpec(std=1.0, position="pre", mode="frozen", seed=2)
    assert np.array_equal(frozen.draw("layer0", 50, 20, 3, step=0), frozen.draw("layer0", 50, 20, 3, step=9))


def test_every_steps_draws_and_the_unit_draw_are_draw():
    for mode in ("per_step", "frozen"):
        spec = NoiseSpec(std=0.3, position="pre", mode=mode, seed=3)
        steps = spec.draws("layer1", 40, 90, 5, steps=4)
        assert steps.shape == (90, 4, 5) and steps.dtype == np.float32
        for t in range(4):
            assert np.array_equal(steps[:, t], spec.draw("layer1", 40, 90, 5, step=t))
            assert np.array_equal(steps[:, t], np.float32(0.3) * spec.unit("layer1", 40, 90, 5, step=t))
        assert np.array_equal(steps[:, 0], steps[:, 3]) == (mode == "frozen")


def test_inactive_noise_is_zero_and_bad_values_rejected():
    assert not NoiseSpec(std=0.0, position="pre").draw("layer0", 0, 5, 2).any()
    assert not NoiseSpec(std=3.0, position="none").active
    with pytest.raises(SnnbenchError, match="noise std"):
        NoiseSpec(std=-1.0, position="pre")
    with pytest.raises(SnnbenchError, match="unknown noise position"):
        NoiseSpec(std=1.0, position="middle")
