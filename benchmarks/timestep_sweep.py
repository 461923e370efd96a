"""MLflow entry point `timestep_sweep`: runs `snnbench timestep_sweep` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["timestep_sweep", *sys.argv[1:]]))
