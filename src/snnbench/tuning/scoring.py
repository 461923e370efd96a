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
    MNIST test set. Metric names carry the labels: ``snn_test_accuracy_calibrated`` / ``_tuned``;
    ``rows`` holds the three scores in the fixed result schema (snnbench.evaluation.harness)."""
    from snnbench.evaluation.metrics import Accuracy

    test = mnist_test_set() if test is None else test
    y = np.asarray(test.y)
    dnn = Accuracy()(None, objective.dnn_logits(test.x), y, None)
    scores = {"test_images": len(y), "dnn_test_accuracy": dnn["accuracy"]}
    settings = {"calibrated": objective.base, "tuned": document["layers"]}
    keys = {"benchmark": "tune_conversion", "model": f"conversion-{objective.task.arch}", "modality": "image",
            "noise_position": "none", "noise_std": 0.0, "seed": objective.task.seed}
    scores["rows"] = [{**keys, "engine": "ort-dnn", "method": "", "steps": 1, **dnn}]
    for label in LABELS:
        snn = Accuracy()(None, objective.snn_logits(settings[label], test.x), y, None)
        scores["rows"].append({**keys, "engine": "nengo-snn", "method": label, "steps": objective.task.steps, **snn})
        scores[f"snn_test_accuracy_{label}"] = snn["accuracy"]
        scores[f"snn_test_accuracy_{label}_ci_low"] = snn["accuracy_ci_low"]
        scores[f"snn_test_accuracy_{label}_ci_high"] = snn["accuracy_ci_high"]
        scores[f"conversion_loss_{label}_points"] = 100.0 * (dnn["accuracy"] - snn["accuracy"])
    return scores
