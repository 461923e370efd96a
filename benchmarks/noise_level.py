"""MLflow entry point `noise_level`: runs `snnbench noise_level` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["noise_level", *sys.argv[1:]]))
