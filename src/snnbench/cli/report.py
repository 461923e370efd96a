"""``snnbench report``: write ``reports/<name>.md`` (and its figures) from finished runs."""

import os
import re
from dataclasses import dataclass

from snnbench.benchmarks.options import require
from snnbench.config import command_options, option
from snnbench.tracking.runs import tracking_uri
from snnbench.tracking.summary import ui_lines


def uri_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b']; '' or 'default' -> [] (the default store)."""
    return [u.strip() for u in text.split(",") if u.strip() and u.strip() != "default"]


@dataclass(frozen=True)
class ReportOwnOptions:
    name: str = option("report", "report name: writes OUT_DIR/NAME.md and OUT_DIR/NAME/*.png")
    tracking_uri: list = option([], "MLflow store(s) to read (comma list; default: MLFLOW_TRACKING_URI, else "
                                    "sqlite:///mlflow.db in the working directory)", uri_list)
    out_dir: str = option("reports", "folder the report is written to")
    prefer: str = option("full", "which run a section uses when several qualify: the newest full-profile run (else "
                                 "the newest), or simply the newest", choices=("full", "newest"))


Options = command_options("ReportOptions", ReportOwnOptions, doc="report's settings")
OPTIONS = {"report": Options}


def run(options: Options):
    from snnbench.reporting.report import build_report

    require(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", options.name) is not None,
            f"--name {options.name!r}: use letters, digits, '_', '.' or '-' only (it names a file)")
    uris = options.tracking_uri or [tracking_uri()]
    path = build_report(uris, options.name, options.out_dir, options.prefer)
    print(f"report written to {path}")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e report`: keep the report with that run
        import mlflow

        with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]) as run:
            mlflow.log_artifact(str(path), "report")
            figures = path.with_suffix("")
            if figures.is_dir():
                mlflow.log_artifacts(str(figures), f"report/{figures.name}")
        print("\n".join(ui_lines(tracking_uri(), run.info.experiment_id, run.info.run_id)))
    return path
