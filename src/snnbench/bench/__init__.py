"""Benchmarks: one module per command, each with ``add_arguments(parser, command)`` and ``run(args)``."""
