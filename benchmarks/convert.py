"""MLflow entry point `convert`: runs `snnbench convert` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
