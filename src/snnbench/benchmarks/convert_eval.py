"""What ``snnbench convert`` measures and logs of the DNN and the converted SNN on the test images:
accuracy rows (the SNN's per step count of the curve, with its paired loss against the DNN on the
same images), throughput and one-image latency, how exactly the rate-mode network reproduces ONNX
Runtime, and the artifacts (models, confusion matrices, the accuracy-vs-steps curve)."""

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from snnbench import engines
from snnbench.evaluation.harness import CLEAN, score
from snnbench.evaluation.metrics import accuracy, correct, paired_difference

LATENCY_IMAGES = 20


def _latency_ms(predict, x) -> float:
    """Mean time of one-image predictions (after one warm-up call)."""
    predict(x[:1])
    started = time.perf_counter()
    for i in range(len(x)):
        predict(x[i: i + 1])
    return 1000 * (time.perf_counter() - started) / len(x)


def evaluate_dnn(onnx_path: Path, x, y, keys: dict) -> dict:
    """The DNN in ONNX Runtime: its result row (accuracy, activity), logits and timing."""
    model = engines.build("ort-dnn", onnx_path)
    logits = model.predict(x)
    row = score(model, logits, y, model.last_activity, **keys)
    # timed on the original graph: the harness's copy also outputs every hidden activation
    runner = engines.build("ort-dnn", onnx_path, {"activity": False})
    runner.predict(x[:10])
    started = time.perf_counter()
    runner.predict(x)
    seconds = time.perf_counter() - started
    single = engines.build("ort-dnn", onnx_path, {"batch_size": 1, "activity": False})
    return {"row": row, "logits": logits, "accuracy": row["accuracy"], "throughput_ips": len(x) / seconds,
            "latency_ms": _latency_ms(single.predict, x[:LATENCY_IMAGES * 5])}


def corrected_layers(converted, settings: dict) -> dict:
    """--method corrected: for each step count of the curve (and ``sim.steps``), the calibrated
    layers with that step count's error correction (snnbench.conversion.correction), from the
    calibration subset of the MNIST training images: {steps: (layers, per-layer error report,
    rates)}. With ``--rates validated`` each step count takes the rates (uniform or balanced) whose
    corrected network classifies more of a seeded subset of the validation hold-out correctly
    (uniform on a tie), simulated by snnbench.conversion.correction.simulate (the mean readout);
    ``rates`` then carries both validation accuracies."""
    from snnbench.conversion.calibration import (RATES, calibrate, calibration_inputs, mnist_training_images,
                                                 mnist_validation_images)
    from snnbench.conversion.correction import correct, simulate

    calibration, sim = settings["calibration"], settings["sim"]
    train = mnist_training_images(calibration.seed)
    x = calibration_inputs(train, calibration.samples, calibration.seed)
    options = RATES if calibration.rates == "validated" else (calibration.rates,)
    calibrated = {r: calibrate(converted, train, replace(calibration, rates=r), sim.dt, settings["base"])[0]
                  for r in options}
    if len(options) > 1:
        x_val, y_val = mnist_validation_images(calibration.seed, calibration.samples)
    chosen = {}
    for steps in sorted(set(settings["steps_list"]) | {sim.steps}):
        candidates = {r: correct(converted, layers, x, steps, sim.dt, sim.seed) for r, layers in calibrated.items()}
        rates = {"rates": options[0]}
        if len(options) > 1:
            scores = {r: accuracy(simulate(converted, c[0], x_val, steps, sim.dt, sim.seed, torch.float32)[-1], y_val)
                      for r, c in candidates.items()}
            rates = {"rates": max(options, key=lambda r: scores[r]), "validation_accuracy": scores,
                     "validation_images": len(y_val)}
        chosen[steps] = (*candidates[rates["rates"]], rates)
    return chosen


def evaluate_snn(converted, layers: list, settings: dict, x, y, keys: dict, per_steps: dict | None = None) -> dict:
    """The converted SNN: one result row per step count of the curve and ``sim.steps`` (activity
    measured at ``sim.steps``), its logits there, timing and the runner's activity statistics.
    One simulation gives the curve up to ``sim.steps`` and another the longer step counts; with
    ``per_steps`` ({steps: layers}, --method corrected) each step count runs its own layers, and its
    activity is measured at every step count."""
    sim = settings["sim"]
    steps = sorted(set(settings["steps_list"]) | {sim.steps})
    longer = [s for s in steps if s > sim.steps]
    # simulations: (steps simulated, layers, step counts read, counters)
    runs = [(s, per_steps[s], [s], True) for s in steps] if per_steps else \
        [(sim.steps, layers, [s for s in steps if s <= sim.steps], True)] + \
        ([(max(longer), layers, longer, False)] if longer else [])
    logits, activities = {}, {}
    for n_steps, run_layers, read, counters in runs:
        with engines.build("nengo-snn", converted, {"layers": run_layers, "sim": replace(sim, steps=n_steps),
                                                    "counters": counters}) as model:
            runner = model.runner(CLEAN)
            if n_steps == sim.steps:
                runner.predict(x[:1])  # builds the simulator (and traces the TF graph) before timing
            logits.update(runner.predict_curve(x, read))
            if counters and (per_steps or n_steps == sim.steps):  # a run per step count: each its own activity
                activities[n_steps] = model.activity(runner.last_stats, len(x))
            if n_steps == sim.steps:
                seconds, stats = runner.last_seconds, runner.last_stats
    with engines.build("nengo-snn", converted, {"layers": per_steps[sim.steps] if per_steps else layers,
                                                "sim": replace(sim, minibatch=1),
                                                "counters": False}) as single:
        latency = _latency_ms(single.predict, x[:LATENCY_IMAGES])
    rows = [score(model, logits[s], y, activities.get(s), **{**keys, "steps": s}) for s in steps]
    main = rows[steps.index(sim.steps)]
    return {"rows": rows, "logits": logits[sim.steps], "all_logits": logits, "accuracy": main["accuracy"], "row": main,
            "curve": {r["steps"]: r["accuracy"] for r in rows}, "throughput_ips": len(x) / seconds,
            "latency_ms": latency, "stats": stats}


def paired_losses(rows: list, dnn_logits: np.ndarray, snn_logits: dict, y: np.ndarray) -> list:
    """The SNN result ``rows`` with the paired loss against the DNN on the same images added:
    ``paired_loss`` (DNN accuracy minus SNN accuracy, as a fraction) and its 95% paired-bootstrap
    interval ``paired_loss_ci_low`` / ``paired_loss_ci_high``, from ``snn_logits`` ({steps: logits})."""
    dnn_correct = correct(dnn_logits, y)
    out = []
    for row in rows:
        mean, low, high = paired_difference(dnn_correct, correct(snn_logits[row["steps"]], y))
        out.append({**row, "paired_loss": mean, "paired_loss_ci_low": low, "paired_loss_ci_high": high})
    return out


def rate_equivalence(converted, onnx_path: Path, x, sim) -> float:
    """Max |logit difference| between the relu-rate network and ONNX Runtime on real images."""
    from snnbench.conversion.nengo_net import LayerParams

    reference = engines.build("ort-dnn", onnx_path, {"activity": False}).predict(x)
    exact = replace(sim, steps=2, readout="last", minibatch=min(sim.minibatch, len(x)))
    with engines.build("nengo-snn", converted, {"layers": LayerParams("relu-rate"), "sim": exact,
                                                "counters": False}) as model:
        return float(np.abs(model.predict(x) - reference).max())


def confusion(labels, logits, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, logits.argmax(axis=1)), 1)
    return matrix


def log_artifacts(onnx_path: Path, converted, document: dict, dnn: dict, snn: dict, y):
    import mlflow
    import mlflow.onnx
    import onnx
    import onnxruntime

    from snnbench.conversion import onnx_io
    from snnbench.evaluation import plots

    mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", save_as_external_data=False,
                          pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_io.save(converted, tmp / "snn")
        (tmp / "snn" / "params.json").write_text(json.dumps(document, indent=1))  # the setting used
        mlflow.log_artifacts(str(tmp / "snn"), "snn")
        matrices = {"dnn": confusion(y, dnn["logits"]), "snn": confusion(y, snn["logits"])}
        for name, matrix in matrices.items():
            plots.confusion_plot(matrix, f"{name.upper()} confusion matrix", tmp / f"confusion_{name}.png")
            mlflow.log_artifact(str(tmp / f"confusion_{name}.png"), "plots")
        mlflow.log_dict({k: v.tolist() for k, v in matrices.items()}, "confusion_matrices.json")
        plots.steps_curve_plot(snn["curve"], dnn["accuracy"], tmp / "accuracy_vs_steps.png")
        mlflow.log_artifact(str(tmp / "accuracy_vs_steps.png"), "plots")
    mlflow.log_dict({str(k): v for k, v in snn["curve"].items()}, "accuracy_vs_steps.json")


