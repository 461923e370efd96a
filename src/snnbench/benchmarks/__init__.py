"""The benchmarks: one module per command, imported only when its command is used (``snnbench
report`` does not load TensorFlow). A command's module has ``OPTIONS`` (command -> its settings, a
frozen dataclass made by :func:`snnbench.config.command_options`) and ``run(options)``.

``BENCHMARKS`` is the registry the command line, ``MLproject`` and the report's command lines are
built from; each command's parser (:mod:`snnbench.command_line`) is made of its ``Options``.
"""

from snnbench.command_line import CommandParser, command_parser

# command -> (module under snnbench, one-line description)
BENCHMARKS = {
    "noise_sweep": ("benchmarks.noise_sweep",
                    "DNN (ONNX Runtime) vs converted Nengo SNN vs snntorch SNN under Gaussian noise"),
    "robustness": ("benchmarks.robustness",
                   "noise_sweep over every perturbation family (faults, corruptions, attacks) and the robustness "
                   "claims' verdicts"),
    "convert": ("benchmarks.convert", "train a DNN, export to ONNX, convert to a spiking Nengo network, compare"),
    "tune": ("benchmarks.tune_conversion", "Optuna search over the converted SNN's untrained neuron parameters"),
    "multimodal": ("benchmarks.multimodal",
                   "snntorch suite: one configuration, image / audio / multimodal, DNN and SNN"),
    "size_sweep": ("benchmarks.multimodal", "snntorch suite: model size S, S/2, S/3"),
    "noise_level": ("benchmarks.multimodal", "snntorch suite: evaluation noise std 0.1 and 5"),
    "noise_position": ("benchmarks.multimodal", "snntorch suite: noise before vs after the activation"),
    "reset_sweep": ("benchmarks.multimodal", "snntorch suite: hard vs soft reset"),
    "neuron_sweep": ("benchmarks.multimodal", "snntorch suite: LIF vs IF neurons"),
    "timestep_sweep": ("benchmarks.multimodal", "snntorch suite: 4, 8, 16 time steps"),
    "multimodal_study": ("benchmarks.multimodal_study",
                         "snntorch suite: the study's whole grid with seeds (grid trainer, GPUs)"),
    "throughput": ("benchmarks.throughput",
                   "inference speed of ORT, nengo-dl, nengo and snntorch over steps and batch sizes"),
}
ALIASES = {"tune_conversion": "tune"}


def benchmark_parser(command: str) -> CommandParser:
    return command_parser(command, *BENCHMARKS[command])
