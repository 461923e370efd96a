"""What ``snnbench convert`` measures and logs of the DNN and the converted SNN on the test images:
accuracy rows (the SNN's per step count, with its paired loss against the DNN on the same images),
throughput, one-image latency, activity, energy per device, how exactly the rate-mode network
reproduces ONNX Runtime, and the artifacts; with ``--target nengo-loihi`` the same on nengo-loihi's
Loihi emulator (``loihi_*`` metrics), with ``--nir-out`` the SNN as a NIR graph.
"""

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import mlflow.onnx
import numpy as np
import onnx
import onnxruntime

from snnbench import engines
from snnbench.engines import ORT_DNN, NENGO_SNN, LOIHI_EMULATOR
from snnbench.conversion import calibration as cal, converted_files, correction
from snnbench.conversion.nengo_net import LayerParams
from snnbench.evaluation import plots
from snnbench.evaluation.energy import DEVICES, column
from snnbench.evaluation.harness import ResultRow, evaluate_curve, score
from snnbench.evaluation.metrics import accuracy, paired_difference

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
    model = engines.build(ORT_DNN, onnx_path)
    logits = model.predict(x)
    row = score(model, logits, y, model.last_activity, **keys)
    # timed on the original graph: the harness's copy also outputs every hidden activation
    runner = engines.build(ORT_DNN, onnx_path, {"activity": False})
    runner.predict(x[:10])
    started = time.perf_counter()
    runner.predict(x)
    seconds = time.perf_counter() - started
    single = engines.build(ORT_DNN, onnx_path, {"batch_size": 1, "activity": False})
    return {"row": row, "logits": logits, "accuracy": row["accuracy"], "throughput_ips": len(x) / seconds,
            "latency_ms": _latency_ms(single.predict, x[:LATENCY_IMAGES * 5])}


def corrected_layers(converted, settings) -> dict:
    """--method corrected: {steps: (layers, per-layer error report, choice)} for each step count of
    the curve and ``sim.steps``: the calibrated layers with that step count's error correction
    (snnbench.conversion.correction) on the calibration subset of the training split.

    With ``--rates validated`` each step count takes the fewest spikes that keep the DNN's accuracy
    on a seeded validation subset (the mean readout): uniform, then balanced rates, at each of
    ``RATE_FACTORS`` times the calibrated rate in turn, the first whose corrected network scores within
    ``VALIDATION_TOLERANCE`` of the DNN there, else the best (the first on a tie); ``choice`` says
    which (``rates``, ``rate_factor``) and lists every setting tried with its validation accuracy.
    ``settings``: convert's (snnbench.benchmarks.convert.ConversionSettings).
    The DNN's activations on the calibration subset are computed once for all of it; the validation
    images ride along in each correction's simulation, never informing it."""
    calibration, sim = settings.calibration, settings.sim
    train = settings.inputs.training()
    x, activations = cal.calibration_activations(converted, train, calibration)
    targets = [correction.channel_means(a, stage) for a, stage in zip(activations, converted.hidden)]
    validated = calibration.rates == "validated"
    options = cal.RATES if validated else (calibration.rates,)
    calibrated = {r: cal.calibrate(converted, train, replace(calibration, rates=r), sim.dt, settings.base)[0]
                  for r in options}
    all_steps = sorted(set(settings.steps_list) | {sim.steps})
    ops = correction.Ops()  # one scratch buffer for all the corrections
    if not validated:
        return {steps: (*correction.correct(converted, calibrated[options[0]], x, steps, sim.dt, sim.seed,
                                            targets=targets, ops=ops), {"rates": options[0], "rate_factor": 1.0})
                for steps in all_steps}
    x_val, y_val = settings.inputs.validation(calibration.samples, calibration.seed)
    dnn = accuracy(correction.activations(converted, x_val)[-1].numpy(), y_val)
    chosen = {}
    for steps in all_steps:
        tried, results = [], []
        for factor in cal.RATE_FACTORS:
            for rates in options:
                layers = [cal.with_rate_factor(p, factor) for p in calibrated[rates]]
                fixed, report, logits = correction.correct(converted, layers, x, steps, sim.dt, sim.seed,
                                                           targets=targets, x_val=x_val, ops=ops)
                tried.append({"rates": rates, "rate_factor": factor, "validation_accuracy": accuracy(logits, y_val)})
                results.append((fixed, report))
                if tried[-1]["validation_accuracy"] >= dnn - cal.VALIDATION_TOLERANCE:
                    break
            else:
                continue
            break
        kept = [i for i, t in enumerate(tried) if t["validation_accuracy"] >= dnn - cal.VALIDATION_TOLERANCE]
        best = kept[0] if kept else max(range(len(tried)), key=lambda i: (tried[i]["validation_accuracy"], -i))
        chosen[steps] = (*results[best], {"rates": tried[best]["rates"], "rate_factor": tried[best]["rate_factor"],
                                          "validation_accuracy": tried[best]["validation_accuracy"],
                                          "dnn_validation_accuracy": dnn, "validation_images": len(y_val),
                                          "tried": tried})
    return chosen


def evaluate_snn(converted, layers: list, settings, x, y, keys: dict, per_steps: dict | None = None) -> dict:
    """The converted SNN: a result row per step count of the curve and ``sim.steps``, the logits,
    timing and activity statistics at ``sim.steps`` (where activity is measured). One simulation
    gives the curve up to ``sim.steps``, another the longer step counts; with ``per_steps``
    ({steps: layers}, --method corrected) each step count runs (and measures activity) on its own.
    ``settings``: convert's (snnbench.benchmarks.convert.ConversionSettings)."""
    sim = settings.sim
    steps = sorted(set(settings.steps_list) | {sim.steps})
    longer = [s for s in steps if s > sim.steps]
    # simulations: (steps simulated, layers, step counts read, counters)
    runs = [(s, per_steps[s], [s], True) for s in steps] if per_steps else \
        [(sim.steps, layers, [s for s in steps if s <= sim.steps], True)] + \
        ([(max(longer), layers, longer, False)] if longer else [])
    rows, logits = {}, {}
    for n_steps, run_layers, read, counters in runs:
        with engines.build(NENGO_SNN, converted, {"layers": run_layers, "sim": replace(sim, steps=n_steps),
                                                    "counters": counters}) as model:
            if n_steps == sim.steps:
                model.predict(x[:1])  # builds the simulator (and traces the TF graph) before timing
            # the activity (with counters: at sim.steps, or per_steps each step count's own) on its step count's row
            curve = evaluate_curve(model, x, y, read, **keys)
            rows.update(curve.rows)
            logits.update(curve.logits)
            if n_steps == sim.steps:
                seconds, activity = curve.seconds, model.last_activity
    with engines.build(NENGO_SNN, converted, {"layers": per_steps[sim.steps] if per_steps else layers,
                                                "sim": replace(sim, minibatch=1), "counters": False}) as single:
        latency = _latency_ms(single.predict, x[:LATENCY_IMAGES])
    rows = [rows[s] for s in steps]
    main = rows[steps.index(sim.steps)]
    return {"rows": rows, "logits": logits[sim.steps], "accuracy": main["accuracy"], "row": main,
            "curve": {r["steps"]: r["accuracy"] for r in rows}, "throughput_ips": len(x) / seconds,
            "latency_ms": latency, "stats": activity.details if activity else {}}


def paired_losses(rows: list[ResultRow], dnn: ResultRow) -> list[ResultRow]:
    """The SNN result ``rows`` with ``paired_loss`` (DNN minus SNN accuracy on the same images, a
    fraction) and its 95% paired-bootstrap interval ``paired_loss_ci_low`` / ``_high`` added, from
    which images each row and the DNN's row ``dnn`` got right."""
    out = []
    for row in rows:
        mean, low, high = paired_difference(dnn.correct, row.correct)
        out.append(row.with_extras(paired_loss=mean, paired_loss_ci_low=low, paired_loss_ci_high=high))
    return out


def rate_equivalence(converted, onnx_path: Path, x, sim) -> float:
    """Max |logit difference| between the relu-rate network and ONNX Runtime on real images."""
    reference = engines.build(ORT_DNN, onnx_path, {"activity": False}).predict(x)
    exact = replace(sim, steps=2, readout="last", minibatch=min(sim.minibatch, len(x)))
    with engines.build(NENGO_SNN, converted, {"layers": LayerParams("relu-rate"), "sim": exact,
                                                "counters": False}) as model:
        return float(np.abs(model.predict(x) - reference).max())


def _interval(prefix: str, row: dict) -> dict:
    """The row's accuracy and its 95% interval as ``<prefix>_accuracy[_ci_low|_ci_high]`` metrics."""
    return {f"{prefix}_{k}": row[k] for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high")}


def _energy(prefix: str, row: dict) -> dict:
    return {f"{prefix}_{column(d)}": row[column(d)] for d in DEVICES if row.get(column(d)) is not None}


def log_metrics(converted, dnn: dict, snn: dict, equivalence: float):
    macs = converted.macs()
    stats = snn["stats"]
    metrics = {**_interval("dnn", dnn["row"]), **_interval("snn", snn["row"]),
               "conversion_loss_pp": 100 * (dnn["accuracy"] - snn["accuracy"]),
               "conversion_loss_pp_ci_low": 100 * snn["row"]["paired_loss_ci_low"],
               "conversion_loss_pp_ci_high": 100 * snn["row"]["paired_loss_ci_high"],
               "dnn_throughput_ips": dnn["throughput_ips"], "snn_throughput_ips": snn["throughput_ips"],
               "dnn_latency_ms": dnn["latency_ms"], "snn_latency_ms": snn["latency_ms"],
               "dnn_macs_per_sample": macs, "rate_equivalence_max_abs_err": equivalence,
               **{f"snn_{k}": v for k, v in stats.items()}, **_energy("dnn", dnn["row"]), **_energy("snn", snn["row"])}
    if stats and macs:
        metrics["snn_synaptic_ops_vs_dnn_macs"] = stats["synaptic_ops_per_sample"] / macs
        metrics["snn_acs_vs_dnn_macs"] = stats["synaptic_acs_per_sample"] / macs
    mlflow.log_metrics(metrics)
    for steps, acc in sorted(snn["curve"].items()):
        mlflow.log_metric("accuracy_at_steps", acc, step=steps)
    for row in snn["rows"]:
        mlflow.log_metric("paired_loss_at_steps", row["paired_loss"], step=row["steps"])


def evaluate_loihi(converted, layers, sim, x, y, keys: dict, test_limit: int = 0, warmup: int | None = None) -> dict:
    """The SNN on the Loihi emulator (engine ``loihi-emulator``, scored by the same harness): its
    result row, ``loihi_*`` metrics and core utilization."""
    if test_limit:
        x, y = x[:test_limit], y[:test_limit]
    model = engines.build(LOIHI_EMULATOR, converted, {"layers": layers, "sim": sim, "warmup": warmup})
    started = time.perf_counter()
    logits = model.predict(x)
    seconds = time.perf_counter() - started
    activity = model.last_activity
    row = score(model, logits, y, activity, **keys)
    model.close()
    metrics = {**_interval("loihi", row), "loihi_test_images": len(y), "loihi_warmup_steps": model.warmup,
               "loihi_throughput_ips": len(y) / seconds,
               "loihi_spikes_per_sample": activity.spikes / max(activity.samples, 1),
               "loihi_synaptic_acs_per_sample": row["effective_acs_per_sample"],
               "loihi_spikes_per_neuron_per_step": row["spikes_per_neuron_per_step"], **_energy("loihi", row)}
    return {"row": row, "metrics": metrics, "utilization": model.utilization}


def run_targets(options, converted, layers, sim, test, keys: dict) -> list:
    """Run the SNN on the Loihi emulator (``--target nengo-loihi``) and write its NIR graph
    (``--nir-out``, logged as ``nir/<name>``); the extra result rows. ``options``: convert's."""
    rows = []
    if options.target == "nengo-loihi":
        loihi = evaluate_loihi(converted, layers, sim, test.x, test.y, keys, options.loihi_test_limit,
                               options.loihi_warmup)
        m = loihi["metrics"]
        mlflow.log_metrics(m)
        mlflow.log_text("\n".join(loihi["utilization"]) + "\n", "loihi/utilization.txt")
        rows.append(loihi["row"])
        print(f"loihi-emulator: {100 * m['loihi_accuracy']:.2f}% [95% CI {100 * m['loihi_accuracy_ci_low']:.2f}-"
              f"{100 * m['loihi_accuracy_ci_high']:.2f}] on {m['loihi_test_images']} images "
              f"({sim.steps} steps after {m['loihi_warmup_steps']} warm-up)")
    if options.nir_out:
        from snnbench.conversion.nir_export import write_nir

        path = write_nir(converted, layers, sim, options.nir_out)
        mlflow.log_artifact(str(path), "nir")
        print(f"NIR graph written to {path}")
    return rows


def confusion(labels, logits, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, logits.argmax(axis=1)), 1)
    return matrix


def log_artifacts(onnx_path: Path, converted, document: dict, dnn: dict, snn: dict, y):
    """The DNN (an MLflow ONNX model), the SNN with its setting (``snn/``), confusion matrices, the curve."""
    mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", save_as_external_data=False,
                          pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        converted_files.save(converted, tmp / "snn")
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
