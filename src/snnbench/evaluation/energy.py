"""Energy per inference from the measured operation counts of :class:`snnbench.evaluation.metrics.Activity`.

``energy = MACs * E_mac + ACs * E_ac + neuron updates * E_neuron`` per sample, with the run's
effective MACs (nonzero real-valued inputs x fan-out), effective ACs (spikes x fan-out) and neuron
updates (an SNN's membrane updates; a DNN's hidden activations evaluated). Per-operation energies:

* ``cmos45_fp32`` / ``cmos45_int8``: 45 nm CMOS arithmetic only (Horowitz, ISSCC 2014): fp32 MAC
  4.6 pJ (multiply 3.7 + add 0.9), accumulate 0.9 pJ; int8 MAC 0.23 pJ (0.2 + 0.03), accumulate 0.03 pJ;
* ``cpu``, ``gpu``, ``loihi``, ``spinnaker2``: keras-spiking's ModelEnergy figures, J per synaptic
  operation (MAC or AC) / per neuron update: CPU 8.6e-9 / 8.6e-9, GPU 0.3e-9 / 0.3e-9 (Degnan et al.,
  IEEE TVLSI 2016), Loihi 27.1e-12 / 81e-12 (Davies et al., IEEE Micro 2018), SpiNNaker2 450e-12 /
  2.19e-9 (Hoeppner et al., IEEE TCAS-I 2019). Unlike keras-spiking (a dense pass on non-spiking
  devices), every device gets the same measured effective counts.

Memory traffic (weights, membrane state), which dominates on real hardware, is left out: with it an
SNN at T=5 must fire below about 6% of the time to beat an 8-bit ANN (Yan et al., 2024). Read the
figures as operation energy, not measured power.
"""

from typing import NamedTuple


class OperationEnergy(NamedTuple):
    """Joules per multiply-accumulate, per accumulate and per neuron update."""
    mac: float
    ac: float
    neuron: float


DEVICES = {
    "cmos45_fp32": OperationEnergy(4.6e-12, 0.9e-12, 0.0),
    "cmos45_int8": OperationEnergy(0.23e-12, 0.03e-12, 0.0),
    "cpu": OperationEnergy(8.6e-9, 8.6e-9, 8.6e-9),
    "gpu": OperationEnergy(0.3e-9, 0.3e-9, 0.3e-9),
    "loihi": OperationEnergy(27.1e-12, 27.1e-12, 81e-12),
    "spinnaker2": OperationEnergy(450e-12, 450e-12, 2.19e-9),
}


def column(device: str) -> str:
    return f"energy_{device}_joules_per_sample"


def neuron_updates(activity) -> float:
    """Membrane updates, or (a DNN, which records none) hidden activations evaluated."""
    return float(activity.membrane_updates or activity.samples * activity.steps * activity.neurons)


def energy_per_sample(activity, device: str) -> float:
    e = DEVICES[device]
    total = activity.macs * e.mac + activity.acs * e.ac + neuron_updates(activity) * e.neuron
    return total / max(activity.samples, 1)


class Energy:
    """The metric (:class:`snnbench.evaluation.metrics.Metric`): one column per device."""
    columns = tuple(column(d) for d in DEVICES)
    needs_activity = True

    def __call__(self, model, logits, labels, activity) -> dict:
        return {column(d): energy_per_sample(activity, d) for d in DEVICES}
