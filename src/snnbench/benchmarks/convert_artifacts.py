"""``snnbench convert``'s logged results: metrics, the confusion matrices, the accuracy-vs-steps
curve, the converted network and its setting; and the paired differences against the DNN (the same test
images: DNN minus SNN, a paired-bootstrap 95% interval, as the noise sweep reports them).
"""

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from snnbench.evaluation.metrics import paired_difference


def paired_losses(rows: list, dnn_logits: np.ndarray, snn_logits: dict, y: np.ndarray) -> list:
    """The SNN result ``rows`` with the paired loss against the DNN on the same images added:
    ``paired_loss`` (DNN accuracy minus SNN accuracy, as a fraction) and its 95% paired-bootstrap
    interval ``paired_loss_ci_low`` / ``paired_loss_ci_high``, from ``snn_logits`` ({steps: logits})."""
    dnn_correct = np.asarray(dnn_logits).argmax(axis=1) == y
    out = []
    for row in rows:
        mean, low, high = paired_difference(dnn_correct, np.asarray(snn_logits[row["steps"]]).argmax(axis=1) == y)
        out.append({**row, "paired_loss": mean, "paired_loss_ci_low": low, "paired_loss_ci_high": high})
    return out


def layers_summary(layers: list) -> str:
    """The per-layer setting as a JSON param: per-channel lists as their size and range (in full
    in the run's snn/params*.json artifacts)."""
    def brief(value):
        if isinstance(value, list):
            return f"{len(value)} values in [{min(value):.4g}, {max(value):.4g}]"
        return value
    return json.dumps([{k: brief(v) for k, v in asdict(p).items()} for p in layers])


def confusion(labels, logits, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, logits.argmax(axis=1)), 1)
    return matrix


def _plot_confusion(matrix, title: str, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                color="white" if v > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(10), yticks=range(10))
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_curve(curve: dict, dnn_accuracy: float, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    steps = sorted(curve)
    ax.plot(steps, [100 * curve[s] for s in steps], "o-", label="SNN (Nengo)")
    ax.axhline(100 * dnn_accuracy, color="gray", ls="--", label="DNN (ONNX Runtime)")
    ax.set(xlabel="time steps", ylabel="test accuracy (%)", title="Accuracy vs simulation time steps")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_artifacts(onnx_path: Path, converted, document: dict, dnn: dict, snn: dict, y):
    import mlflow
    import mlflow.onnx
    import onnx
    import onnxruntime

    from snnbench.conversion import onnx_io

    mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", save_as_external_data=False,
                          pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_io.save(converted, tmp / "snn")
        (tmp / "snn" / "params.json").write_text(json.dumps(document, indent=1))  # the setting used
        mlflow.log_artifacts(str(tmp / "snn"), "snn")
        matrices = {"dnn": confusion(y, dnn["logits"]), "snn": confusion(y, snn["logits"])}
        for name, matrix in matrices.items():
            _plot_confusion(matrix, f"{name.upper()} confusion matrix", tmp / f"confusion_{name}.png")
            mlflow.log_artifact(str(tmp / f"confusion_{name}.png"), "plots")
        mlflow.log_dict({k: v.tolist() for k, v in matrices.items()}, "confusion_matrices.json")
        _plot_curve(snn["curve"], dnn["accuracy"], tmp / "accuracy_vs_steps.png")
        mlflow.log_artifact(str(tmp / "accuracy_vs_steps.png"), "plots")
    mlflow.log_dict({str(k): v for k, v in snn["curve"].items()}, "accuracy_vs_steps.json")


def log_metrics(converted, dnn: dict, snn: dict, equivalence: float):
    import mlflow

    macs = converted.macs()
    stats = snn["stats"]
    metrics = {"dnn_accuracy": dnn["accuracy"], "snn_accuracy": snn["accuracy"],
               "snn_accuracy_ci_low": snn["row"]["accuracy_ci_low"],
               "snn_accuracy_ci_high": snn["row"]["accuracy_ci_high"],
               "dnn_accuracy_ci_low": dnn["row"]["accuracy_ci_low"],
               "dnn_accuracy_ci_high": dnn["row"]["accuracy_ci_high"],
               "conversion_loss_pp": 100 * (dnn["accuracy"] - snn["accuracy"]),
               "conversion_loss_pp_ci_low": 100 * snn["row"]["paired_loss_ci_low"],
               "conversion_loss_pp_ci_high": 100 * snn["row"]["paired_loss_ci_high"],
               "dnn_throughput_ips": dnn["throughput_ips"], "snn_throughput_ips": snn["throughput_ips"],
               "dnn_latency_ms": dnn["latency_ms"], "snn_latency_ms": snn["latency_ms"],
               "dnn_macs_per_sample": macs, "rate_equivalence_max_abs_err": equivalence}
    metrics.update({f"snn_{k}": v for k, v in stats.items()})
    if stats and macs:
        metrics["snn_synaptic_ops_vs_dnn_macs"] = stats["synaptic_ops_per_sample"] / macs
        metrics["snn_acs_vs_dnn_macs"] = stats["synaptic_acs_per_sample"] / macs
    mlflow.log_metrics(metrics)
    for steps, acc in sorted(snn["curve"].items()):
        mlflow.log_metric("accuracy_at_steps", acc, step=steps)
    for row in snn["rows"]:
        mlflow.log_metric("paired_loss_at_steps", row["paired_loss"], step=row["steps"])
