"""``snnbench report``: write ``reports/<name>.md`` (and its figures) from finished runs."""

import os
import re

from snnbench.benchmarks.options import require
from snnbench.tracking.runs import tracking_uri


def uri_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b']; '' or 'default' -> [] (the default store)."""
    return [u.strip() for u in text.split(",") if u.strip() and u.strip() != "default"]


def add_arguments(parser, command):
    parser.add_argument("--name", default="report", help="report name: writes OUT_DIR/NAME.md and OUT_DIR/NAME/*.png")
    parser.add_argument("--tracking-uri", type=uri_list, default=[],
                        help="MLflow store(s) to read (comma list; default: MLFLOW_TRACKING_URI, "
                             "else sqlite:///mlflow.db in the working directory)")
    parser.add_argument("--out-dir", default="reports", help="folder the report is written to")
    parser.add_argument("--prefer", choices=("full", "newest"), default="full",
                        help="which run a section uses when several qualify: the newest full-profile run "
                             "(else the newest), or simply the newest")


def run(args):
    from snnbench.reporting.report import build_report

    require(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name) is not None,
            f"--name {args.name!r}: use letters, digits, '_', '.' or '-' only (it names a file)")
    uris = args.tracking_uri or [tracking_uri()]
    path = build_report(uris, args.name, args.out_dir, args.prefer)
    print(f"report written to {path}")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e report`: keep the report with that run
        import mlflow

        with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
            mlflow.log_artifact(str(path), "report")
            figures = path.with_suffix("")
            if figures.is_dir():
                mlflow.log_artifacts(str(figures), f"report/{figures.name}")
    return path
