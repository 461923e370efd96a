"""MLflow entry point `throughput`: runs `snnbench throughput` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["throughput", *sys.argv[1:]]))
