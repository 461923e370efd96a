"""MLflow entry point `reset_sweep`: runs `snnbench reset_sweep` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["reset_sweep", *sys.argv[1:]]))
