"""The test set, read once, after the study has chosen: the DNN, the calibrated starting point
and the tuned setting, each scored on the MNIST test images with its label."""

import numpy as np

LABELS = ("calibrated", "tuned")  # the untuned (calibrated) setting, and the study's choice


def mnist_test_set():
    """The MNIST test set: read only here, after the study."""
    from snnbench.data import load_features
    return load_features("image", "test")


def score_on_test_set(objective, document: dict, test=None) -> dict:
    """Test accuracy of the DNN (ONNX Runtime) and of the SNN with the calibrated setting
    (``objective.base``) and with the study's best one (``document``); ``test`` defaults to the
    MNIST test set. Metric names carry the labels: ``snn_test_accuracy_calibrated`` / ``_tuned``."""
    from snnbench.metrics import wilson_interval

    test = mnist_test_set() if test is None else test
    y = np.asarray(test.y)
    dnn = float((objective.dnn_logits(test.x).argmax(axis=1) == y).mean())
    scores = {"test_images": len(y), "dnn_test_accuracy": dnn}
    settings = {"calibrated": objective.base, "tuned": document["layers"]}
    for label in LABELS:
        correct = int((objective.snn_logits(settings[label], test.x).argmax(axis=1) == y).sum())
        low, high = wilson_interval(correct, len(y))
        scores[f"snn_test_accuracy_{label}"] = correct / len(y)
        scores[f"snn_test_accuracy_{label}_ci_low"] = low
        scores[f"snn_test_accuracy_{label}_ci_high"] = high
        scores[f"conversion_loss_{label}_points"] = 100.0 * (dnn - correct / len(y))
    return scores
