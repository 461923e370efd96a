"""MLflow entry point `tune_conversion`: runs `snnbench tune_conversion` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune_conversion", *sys.argv[1:]]))
