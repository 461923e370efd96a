"""Every MLflow entry point (see MLproject): ``python benchmarks/run.py ENTRY_POINT --option=value ...``
runs ``snnbench <command>`` with the entry point's parameters."""

import sys
from pathlib import Path

# Run from a checkout without installing too (e.g. under `mlflow run` with a conda env).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from snnbench.cli.mlproject import run_entry_point  # noqa: E402

if __name__ == "__main__":
    run_entry_point(sys.argv[1:])
