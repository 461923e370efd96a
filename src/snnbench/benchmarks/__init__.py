"""The benchmarks: one module per command, each with ``add_arguments(parser, command)`` and
``run(args)``, imported only when its command is used (``snnbench report`` does not load TensorFlow).

``BENCHMARKS`` is the registry the command line, ``MLproject`` and the report's command lines are
built from; :func:`command_parser` gives a command's parser.
"""

import argparse
import importlib

# command -> (module under snnbench, one-line description)
BENCHMARKS = {
    "noise_sweep": ("benchmarks.noise_sweep", "DNN (ONNX Runtime) vs converted Nengo SNN vs snntorch SNN under Gaussian noise"),
    "convert": ("benchmarks.convert", "train a DNN, export to ONNX, convert to a spiking Nengo network, compare"),
    "tune": ("benchmarks.tune_conversion", "Optuna search over the converted SNN's untrained neuron parameters"),
    "multimodal": ("benchmarks.multimodal", "snntorch suite: one configuration, image / audio / multimodal, DNN and SNN"),
    "size_sweep": ("benchmarks.multimodal", "snntorch suite: model size S, S/2, S/3"),
    "noise_level": ("benchmarks.multimodal", "snntorch suite: evaluation noise std 0.1 and 5"),
    "noise_position": ("benchmarks.multimodal", "snntorch suite: noise before vs after the activation"),
    "reset_sweep": ("benchmarks.multimodal", "snntorch suite: hard vs soft reset"),
    "neuron_sweep": ("benchmarks.multimodal", "snntorch suite: LIF vs IF neurons"),
    "timestep_sweep": ("benchmarks.multimodal", "snntorch suite: 4, 8, 16 time steps"),
    "multimodal_study": ("benchmarks.multimodal_study", "snntorch suite: the study's whole grid with seeds (grid trainer, GPUs)"),
    "throughput": ("benchmarks.throughput", "inference speed of ORT, nengo-dl, nengo and snntorch over steps and batch sizes"),
}
ALIASES = {"tune_conversion": "tune"}
VERBOSE = "--verbose"


def command_parser(command: str, module_name: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``command``, whose module (under ``snnbench``) adds its options."""
    module = importlib.import_module(f"snnbench.{module_name}")
    parser = argparse.ArgumentParser(prog=f"snnbench {command}", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser, command)
    parser.add_argument(VERBOSE, action="store_true",
                        help="show the libraries' start-up messages (TensorFlow, nengo-dl, MLflow's database)")
    parser.set_defaults(command=command, _run=module.run)
    return parser


def benchmark_parser(command: str) -> argparse.ArgumentParser:
    return command_parser(command, *BENCHMARKS[command])
