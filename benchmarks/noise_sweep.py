"""MLflow entry point `noise_sweep`: runs `snnbench noise_sweep` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["noise_sweep", *sys.argv[1:]]))
