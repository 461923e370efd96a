"""Metrics computed the same way for every model, as small classes (after NeuroBench's harness).

Static metrics read the model's weights (:meth:`snnbench.evaluation.harness.Model.weights`); workload
metrics read the predictions and the :class:`Activity` recorded while making them. Definitions follow
NeuroBench (Yik et al., 2024):

* activation sparsity: share of hidden (neuron, time step) outputs that are zero;
* synaptic operations per sample: *effective* MACs (a nonzero real-valued input x its fan-out, every
  step it is presented: a DNN's layers, an SNN's direct-encoded input layer) and *effective* ACs (a
  spike x its fan-out; k spikes of a neuron in one step count k), plus the dense MACs of one forward pass;
* membrane updates per sample: state updates of hidden and output neurons, every step;
* footprint: bytes of weights and biases; parameter count; connection sparsity (share of zero weights
  over all connection matrices).

The ``neurobench`` package (2.3.0) counts otherwise on purpose (tests/test_neurobench.py asserts each
relation): its sparsity also hooks the readout neurons; its membrane updates after the first step count
only neurons whose potential changed; its dense count sums every step; and it counts what a layer
receives, evaluation noise included, where these count the network's own events in every engine alike.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from snnbench.evaluation.energy import Energy


@dataclass
class Activity:
    """What a model did while predicting ``samples`` samples, summed over them."""
    samples: int
    steps: int                   # time steps per sample (1 for a DNN)
    neurons: int                 # hidden neurons (activation units) per step
    active: float                # hidden (neuron, step) outputs that were nonzero
    spikes: float                # hidden output events (a DNN's nonzero activations; an SNN's spikes)
    macs: float                  # effective multiply-accumulates
    acs: float                   # effective accumulates
    membrane_updates: float      # neuron state updates (0 for a DNN)
    dense_macs_per_sample: float  # MACs of one dense forward pass (all inputs, one step)
    details: dict = field(default_factory=dict)  # the engine's own statistics of it (e.g. firing rates per layer)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN for none)."""
    if n <= 0:
        return float("nan"), float("nan")
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def seed_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean over seeds (one value: no interval)."""
    values = np.asarray(list(values), dtype=float)
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)


def paired_difference(correct_a, correct_b, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of A minus accuracy of B on the same samples under the same noise draws, with a
    95% paired-bootstrap interval (percentile; samples resampled, each sample's A-B difference
    kept whole). ``correct_*``: bool arrays (repeats, n) or (n,), row r of A paired with row r of
    B (repeats: noise seeds, model seeds); a sample's difference is its mean over the repeats."""
    a = np.atleast_2d(np.asarray(correct_a, np.float64))
    b = np.atleast_2d(np.asarray(correct_b, np.float64))
    if a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"paired samples need equal, non-empty shapes, got {a.shape} and {b.shape}")
    per_sample = (a - b).mean(axis=0)
    mean = float(per_sample.mean())
    if len(per_sample) == 1:  # one sample: every resample is that sample
        return mean, mean, mean
    interval = stats.bootstrap((per_sample,), np.mean, n_resamples=resamples, batch=200, method="percentile",
                               rng=seed).confidence_interval  # batches of 200 resamples bound the index arrays
    return mean, float(interval.low), float(interval.high)


class Metric:
    """``metric(model, logits, labels, activity) -> {column: value}``; one that ``needs_activity``
    is NaN for a model that recorded none."""
    columns: tuple = ()
    needs_activity = False

    def __call__(self, model, logits, labels, activity: Activity | None) -> dict:
        raise NotImplementedError


def correct(logits, labels) -> np.ndarray:
    """Which samples are classified right (the largest logit is the label's): the one definition of accuracy."""
    return np.asarray(logits).argmax(axis=1) == np.asarray(labels)


def accuracy(logits, labels) -> float:
    """The share of samples classified right (NaN for none)."""
    return float(correct(logits, labels).mean()) if len(labels) else float("nan")


def accuracy_interval(n_correct: int, n: int) -> dict:
    """``n``, the accuracy of ``n_correct`` right of ``n`` and its Wilson 95% interval."""
    low, high = wilson_interval(n_correct, n)
    return {"n": n, "accuracy": n_correct / n if n else float("nan"), "accuracy_ci_low": low, "accuracy_ci_high": high}


class Accuracy(Metric):
    columns = ("n", "accuracy", "accuracy_ci_low", "accuracy_ci_high")

    def __call__(self, model, logits, labels, activity):
        return accuracy_interval(int(correct(logits, labels).sum()), len(labels))


class ActivationSparsity(Metric):
    columns = ("activation_sparsity",)
    needs_activity = True

    def __call__(self, model, logits, labels, activity):
        outputs = activity.samples * activity.steps * activity.neurons
        return {"activation_sparsity": 1.0 - activity.active / outputs if outputs else float("nan")}


class SynapticOperations(Metric):
    columns = ("effective_macs_per_sample", "effective_acs_per_sample", "dense_macs_per_sample",
               "spikes_per_neuron_per_step")
    needs_activity = True

    def __call__(self, model, logits, labels, activity):
        n = max(activity.samples, 1)
        neuron_steps = activity.samples * activity.steps * activity.neurons
        return {"effective_macs_per_sample": activity.macs / n, "effective_acs_per_sample": activity.acs / n,
                "dense_macs_per_sample": activity.dense_macs_per_sample,
                "spikes_per_neuron_per_step": activity.spikes / neuron_steps if neuron_steps else float("nan")}


class MembraneUpdates(Metric):
    columns = ("membrane_updates_per_sample",)
    needs_activity = True

    def __call__(self, model, logits, labels, activity):
        return {"membrane_updates_per_sample": activity.membrane_updates / max(activity.samples, 1)}


class Weights(Metric):
    """Parameter count, footprint (bytes) and connection sparsity of the model's weights."""
    columns = ("parameter_count", "footprint_bytes", "connection_sparsity")

    def __call__(self, model, logits, labels, activity):
        weights = model.weights()
        matrices = [a for a in weights if a.ndim >= 2]
        total = sum(a.size for a in matrices)
        zeros = sum(int((a == 0).sum()) for a in matrices)
        return {"parameter_count": int(sum(a.size for a in weights)),
                "footprint_bytes": int(sum(a.nbytes for a in weights)),
                "connection_sparsity": zeros / total if total else float("nan")}


STATIC = (Weights(),)
ACTIVITY = (ActivationSparsity(), SynapticOperations(), MembraneUpdates(), Energy())
ALL = (Accuracy(), *STATIC, *ACTIVITY)
COLUMNS = tuple(c for m in ALL for c in m.columns)
