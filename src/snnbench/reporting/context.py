"""What every report section shares: the context it writes into, and how runs, intervals and
tables are written."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from snnbench.evaluation.harness import RESULT_TABLE
from snnbench.tracking.runstore import FoundRun, RunStore

DEVICE_TAG = "snnbench.device"  # the device a run actually used (its 'device' param may say 'auto')


# Params shown as each section's scale (those a run logged; others are skipped).
SCALE_PARAMS = ("profile", "seed", "seeds", "arch", "method", "epochs", "train_limit", "test_limit", "test_images", "steps",
                "snn_steps", "model_seeds", "models_from", "n_trials", "val_samples",
                "threads", "warmup", "repeats")


# --- conversion study --------------------------------------------------------------------------


def pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def scale_line(runs: list) -> str:
    """'Scale: profile=quick, epochs=1 ... Runs: `id` ...' for the runs a section used."""
    parts = []
    for run in runs:
        shown = ", ".join([f"{k}={run.params[k]}" for k in SCALE_PARAMS if k in run.params]
                          + [f"device={run.tags[DEVICE_TAG]}"] * (DEVICE_TAG in run.tags))
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


# --- sections ----------------------------------------------------------------------------------

def with_interval(record) -> str:
    """'93.52% [93.03, 93.98]': accuracy and its 95% interval from a result-table row."""
    low, high = record.get("accuracy_ci_low"), record.get("accuracy_ci_high")
    if low is None or high is None or low != low:
        return pct(record["accuracy"])
    return f"{pct(record['accuracy'])} [{100 * low:.2f}, {100 * high:.2f}]"


def results(ctx: Context, run: FoundRun) -> tuple:
    """(rows of the run's fixed-schema result table, None) or (None, lines saying why not)."""
    table = run.table(RESULT_TABLE)
    if table is None or table.empty or "accuracy" not in table:
        return None, unreadable(run, RESULT_TABLE)
    return table.to_dict("records"), None


def logged_table(ctx: Context, experiment: str, artifact: str, needed: set):
    """(run, table, None) for the newest run of ``experiment`` and its table artifact, or
    (run, None, lines saying why there is no usable table)."""
    run = ctx.store.latest(experiment)
    if run is None:
        return None, None, missing(experiment)
    ctx.use(run)
    table = run.table(artifact)
    if table is None or table.empty or not needed <= set(table.columns):
        return run, None, unreadable(run, artifact)
    return run, table, None
