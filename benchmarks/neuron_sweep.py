"""MLflow entry point `neuron_sweep`: runs `snnbench neuron_sweep` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["neuron_sweep", *sys.argv[1:]]))
