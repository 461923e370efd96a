"""MLflow entry point `multimodal`: runs `snnbench multimodal` with the given options."""

import sys

from snnbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["multimodal", *sys.argv[1:]]))
