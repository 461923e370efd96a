"""Energy per inference from the measured operation counts (snnbench.evaluation.energy)."""

import numpy as np
import pytest

from snnbench.evaluation import energy, metrics


def _activity(**changes):
    base = dict(samples=10, steps=4, neurons=50, active=300.0, spikes=400.0, macs=2000.0, acs=5000.0,
                membrane_updates=2400.0, dense_macs_per_sample=999.0)
    return metrics.Activity(**{**base, **changes})


def test_energy_is_ops_times_their_energies_per_sample():
    row = energy.Energy()(None, None, None, _activity())
    # per sample: 200 MACs, 500 ACs, 240 membrane updates
    assert row["energy_cmos45_fp32_joules_per_sample"] == pytest.approx(200 * 4.6e-12 + 500 * 0.9e-12)
    assert row["energy_cmos45_int8_joules_per_sample"] == pytest.approx(200 * 0.23e-12 + 500 * 0.03e-12)
    assert row["energy_loihi_joules_per_sample"] == pytest.approx(700 * 27.1e-12 + 240 * 81e-12)
    assert row["energy_spinnaker2_joules_per_sample"] == pytest.approx(700 * 450e-12 + 240 * 2.19e-9)
    assert row["energy_cpu_joules_per_sample"] == pytest.approx(940 * 8.6e-9)
    assert row["energy_gpu_joules_per_sample"] == pytest.approx(940 * 0.3e-9)


def test_a_dnn_pays_for_its_activations_as_neuron_updates():
    dnn = _activity(steps=1, acs=0.0, membrane_updates=0.0)
    assert energy.neuron_updates(dnn) == 10 * 1 * 50
    assert energy.energy_per_sample(dnn, "gpu") == pytest.approx((200 + 50) * 0.3e-9)


def test_every_result_row_has_the_energy_columns():
    from snnbench.evaluation.harness import RESULT_COLUMNS, Model, score

    class Dummy(Model):
        engine = "dummy"

        def weights(self):
            return [np.ones((3, 2))]

    row = score(Dummy(), np.eye(3), np.arange(3), _activity())
    assert {energy.column(d) for d in energy.DEVICES} <= set(RESULT_COLUMNS)
    assert row["energy_loihi_joules_per_sample"] > 0
    assert np.isnan(score(Dummy(), np.eye(3), np.arange(3), None)["energy_loihi_joules_per_sample"])
