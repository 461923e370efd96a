"""MLflow entry point `report`: runs `snnbench report` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
