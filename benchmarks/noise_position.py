"""MLflow entry point `noise_position`: runs `snnbench noise_position` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["noise_position", *sys.argv[1:]]))
