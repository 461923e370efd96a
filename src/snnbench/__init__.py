"""snnbench: MLflow-tracked benchmarks for spiking neural networks."""

__version__ = "0.1.0"
