"""What a command prints when its run ends, as MLflow prints a run's address when it ends on a
tracking server: the run's name and id, the headline figures its command names
(:func:`headline`), where the run's tables and plots are, and the command that opens the run in
the MLflow UI. A run whose command names no headline shows its metrics instead."""

import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from snnbench.execution.masking import mask_credentials

UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
SERVER_SCHEMES = ("http", "https")    # stores that are themselves a UI
METRICS_SHOWN = 12                    # a run without a headline: its first metrics, by name

_HEADLINES: dict[str, list] = {}      # run id -> [(title, table)], in the order named


def headline(title: str, table) -> None:
    """Name a table (a DataFrame, or rows as dicts) of the active run's headline figures; it is
    printed, after those named before it, when the run ends."""
    _HEADLINES.setdefault(mlflow.active_run().info.run_id, []).append((title, pd.DataFrame(table)))


def interval(value: float, low: float, high: float, scale: float = 100, digits: int = 1, sign: str = "") -> str:
    """``value [low, high]`` times ``scale`` (a fraction as percent by default); '–' where unknown."""
    def text(v):
        return f"{scale * v:{sign}.{digits}f}" if v is not None and np.isfinite(v) else "–"
    return text(value) if low is None or not np.isfinite(low) else f"{text(value)} [{text(low)}, {text(high)}]"


def absolute_store(uri: str) -> str:
    """``uri`` with a relative sqlite or file path made absolute, so the command works from any folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and ":memory:" not in uri:
        return prefix + str(Path.cwd() / uri[len(prefix):])
    if "://" not in uri and ":" not in uri[:3]:  # a plain path (a file store)
        return str(Path(uri).resolve())
    return uri


def ui_lines(uri: str, experiment_id: str, run_id: str) -> list[str]:
    """How to open the run: its address on the tracking server, or `mlflow ui` on the store and the
    address it serves the run at."""
    shown = mask_credentials(uri)
    if urlparse(uri).scheme in SERVER_SCHEMES:
        return [f"View the run at: {shown.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"]
    return [f"Open it in the MLflow UI: mlflow ui --backend-store-uri {shlex.quote(absolute_store(shown))}",
            f"  then {UI_ADDRESS}/#/experiments/{experiment_id}/runs/{run_id}"]


def _artifact_folder(artifact_uri: str) -> str:
    parsed = urlparse(artifact_uri)
    return unquote(parsed.path) if parsed.scheme == "file" else artifact_uri


def render(title: str, table: pd.DataFrame) -> str:
    """A titled table as text, every column left-aligned, indented under its title."""
    if not len(table):
        return f"{title}: none"
    texts = table.astype(str)
    widths = {c: max(len(str(c)), *texts[c].str.len()) + 1 for c in table.columns}  # two spaces between columns
    body = texts.to_string(index=False, justify="left", formatters={c: f"{{:<{w}}}".format for c, w in widths.items()})
    return title + "\n" + "\n".join("  " + line.rstrip() for line in body.splitlines())


def _tables(run, named: list) -> list[str]:
    if named:
        return [render(title, table) for title, table in named]
    metrics = sorted(run.data.metrics.items())
    if not metrics:
        return []
    shown = pd.DataFrame([(k, f"{v:.6g}") for k, v in metrics[:METRICS_SHOWN]], columns=["metric", "value"])
    more = f"\n  ({len(metrics) - METRICS_SHOWN} more in the run)" if len(metrics) > METRICS_SHOWN else ""
    return [render("Metrics", shown) + more]


def summary_text(run_id: str, uri: str) -> str:
    """The summary of a finished run: name and id, headline tables, artifacts, how to open it."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    status = {"FINISHED": "finished"}.get(run.info.status, run.info.status.lower())
    artifacts = sorted((a.path + "/" if a.is_dir else a.path for a in client.list_artifacts(run_id)),
                       key=lambda p: (p.endswith("/"), Path(p.rstrip("/")).suffix not in (".md", ".png"), p))
    lines = [f"Run '{run.info.run_name}' (id {run_id}) {status}.", ""]
    for table in _tables(run, _HEADLINES.pop(run_id, [])):
        lines += [table, ""]
    if artifacts:
        lines += [f"Tables and plots (the run's artifacts) in {_artifact_folder(run.info.artifact_uri)}:",
                  "  " + ", ".join(artifacts)]
    lines += ui_lines(uri, run.info.experiment_id, run_id)
    return "\n".join(lines)


def print_summary(run_id: str, uri: str) -> None:
    print("\n" + summary_text(run_id, uri), flush=True)
