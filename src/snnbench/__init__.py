"""snnbench: MLflow-tracked benchmarks for spiking neural networks."""

import os

__version__ = "0.1.0"

# CUDA feeds every stream through one of CUDA_DEVICE_MAX_CONNECTIONS hardware queues (8 by
# default), so streams beyond that share queues and wait on each other's work; the grid trainer
# runs each stack on a stream of its own. Read when a process first uses CUDA: set here, before
# that can happen (a value the user set wins).
os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
