"""MLflow entry point `reproduce`: runs `snnbench reproduce` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", *sys.argv[1:]]))
