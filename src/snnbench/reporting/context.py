"""What every report section shares: the context it writes into, and how runs, intervals and
tables are written."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from snnbench.engines import NENGO_SNN, ORT_DNN
from snnbench.evaluation.harness import RESULT_TABLE
from snnbench.tracking.runstore import FoundRun, RunStore

DEVICE_TAG = "snnbench.device"  # the device a run actually used (its 'device' param may say 'auto')
# Params shown as each section's scale (those a run logged; others are skipped).
SCALE_PARAMS = ("profile", "seed", "seeds", "arch", "method", "epochs", "train_limit", "test_limit", "test_images",
                "steps", "snn_steps", "model_seeds", "models_from", "n_trials", "val_samples", "threads", "warmup",
                "repeats")


def _absent(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value) -> str:
    return "–" if _absent(value) else f"{100 * value:.2f}%"


def number(value) -> str:
    if _absent(value):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def scale_line(runs: list) -> str:
    """'Runs: `id` (benchmark; profile=quick, epochs=1, ...); ...' for the runs a section used."""
    parts = []
    for run in runs:
        shown = [f"{k}={run.params[k]}" for k in SCALE_PARAMS if k in run.params]
        shown = ", ".join(shown + ([f"device={run.tags[DEVICE_TAG]}"] if DEVICE_TAG in run.tags else []))
        benchmark = run.tags.get("snnbench.benchmark", "")
        parts.append(f"`{run.id}` ({benchmark}{'; ' + shown if shown else ''})")
    return "Runs: " + "; ".join(parts) + "."


def unreadable(run: FoundRun, artifact: str) -> list:
    return [f"_Run `{run.id}` has no readable `{artifact}` with the expected columns (artifacts at "
            f"`{run.run.info.artifact_uri}`); copy its artifacts beside its store or rerun "
            f"`snnbench {run.tags.get('snnbench.benchmark', '')}`._", ""]


def missing(command: str) -> list:
    return [f"_No runs yet: run `snnbench {command}`._", ""]


@dataclass
class Context:
    store: RunStore
    figures: Path           # folder of this report's PNGs
    link_prefix: str        # how the markdown refers to that folder
    used: list = field(default_factory=list)  # runs whose commands head the report

    def figure(self, filename: str) -> tuple:
        return self.figures / filename, f"{self.link_prefix}/{filename}"

    def use(self, run: FoundRun):
        if run.id not in {r.id for r in self.used}:
            self.used.append(run)


def interval(text: str, low, high) -> str:
    """``text [low, high]`` with the bounds (fractions) in percent or points; ``text`` where not logged."""
    return text if low is None or high is None or low != low else f"{text} [{100 * low:.2f}, {100 * high:.2f}]"


def with_interval(record) -> str:
    """'93.52% [93.03, 93.98]': accuracy and its 95% interval from a result-table row."""
    return interval(pct(record["accuracy"]), record.get("accuracy_ci_low"), record.get("accuracy_ci_high"))


def results(run: FoundRun) -> tuple:
    """(rows of the run's fixed-schema result table, None) or (None, lines saying why not)."""
    table = run.table(RESULT_TABLE)
    if table is None or table.empty or "accuracy" not in table:
        return None, unreadable(run, RESULT_TABLE)
    return table.to_dict("records"), None


def dnn_and_snn(records: list) -> tuple:
    """The DNN's row (``ort-dnn``) and the SNN's rows (``nengo-snn``) by ascending steps."""
    dnn = next(r for r in records if r["engine"] == ORT_DNN)
    return dnn, sorted((r for r in records if r["engine"] == NENGO_SNN), key=lambda r: r["steps"])


def loss_points(dnn: dict, snn: dict) -> str:
    """DNN minus SNN accuracy in points, two decimals."""
    return f"{100 * (dnn['accuracy'] - snn['accuracy']):.2f}"


def latest_conversion(store: RunStore, arch: str = "mlp", target: str = "nengo-dl", **params) -> FoundRun | None:
    """The newest ``convert`` run of the project's network ``arch`` (not a given .onnx file) for ``target``
    with these ``params``; ``arch="mlp"``: the reference study's network."""
    return store.latest("convert", where=lambda r: r.params.get("arch", "mlp") == arch and not r.params.get("onnx_model")
                        and r.params.get("target", "nengo-dl") == target
                        and all(r.params.get(k) == v for k, v in params.items()))
