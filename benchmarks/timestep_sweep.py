"""MLflow entry point `timestep_sweep`: runs `snnbench timestep_sweep` with the given options."""

import sys
from pathlib import Path

# Run from a checkout without installing too (e.g. under `mlflow run` with a conda env).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from snnbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["timestep_sweep", *sys.argv[1:]]))
