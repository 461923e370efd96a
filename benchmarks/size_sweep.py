"""MLflow entry point `size_sweep`: runs `snnbench size_sweep` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["size_sweep", *sys.argv[1:]]))
