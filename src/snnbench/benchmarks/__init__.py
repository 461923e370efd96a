"""The benchmarks: one module per command, each with ``add_arguments(parser, command)`` and
``run(args)``, imported only when its command is used (``snnbench report`` does not load TensorFlow).

``BENCHMARKS`` is the registry the command line, ``MLproject`` and the report's command lines are
built from. A command's parser is a jsonargparse parser, so every command also takes ``--config FILE``
(a YAML file of option values, e.g. a run's logged ``config.yaml``, which replays it) and ``--print_config``.
"""

import argparse
import importlib
from pathlib import PurePath

import jsonargparse

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
VERBOSE = "--verbose"
NONE_WORDS = ("none", "off", "auto", "profile", "default", "")  # words an option may read as "nothing"


def none_word(parse) -> str | None:
    """The first of NONE_WORDS that ``parse`` (an option's type) reads as None or [], else None."""
    for word in NONE_WORDS:
        try:
            if parse(word) in (None, []):
                return word
        except Exception:  # option types raise several exception types on a bad word
            continue
    return None


def _as_text(value) -> str:
    """A value as the command line spells it (lists comma-separated), for the option's own parser."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(_as_text, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reparsable(parse):
    """``parse`` for a command-line word, a value a config file gives, or an already parsed value:
    each goes through the same checks (jsonargparse calls the type again on what it parsed)."""
    if parse in (None, str, int, float):
        return parse

    def parse_any(value):
        return None if value is None else parse(value if isinstance(value, str) else _as_text(value))
    parse_any.__dict__.update(getattr(parse, "__dict__", {}))
    parse_any.__name__ = getattr(parse, "__name__", "value")
    return parse_any


def _nullable(action) -> bool:
    """Whether the option may be None: its default is, or its type reads some word as None."""
    default = action.type(action.default) if action.type and isinstance(action.default, str) else action.default
    return default is None or (action.type is not None and none_word(action.type) is not None)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each default as the command line spells it (lists comma-separated, and the
    word the option reads as nothing: auto, none, off)."""

    def _expand_help(self, action):
        if action.default is None or action.default == []:
            word = none_word(action.type) if action.type else None
            shown = "" if word is None and action.default == [] else word
        else:
            shown = action.default if isinstance(action.default, str) else _as_text(action.default)
        return super()._expand_help(argparse.Namespace(**{**vars(action), "default": shown}))


class CommandParser(jsonargparse.ArgumentParser):
    """A command's parser: its namespace carries ``command`` and not the ``--config`` file names."""

    def __init__(self, command: str, **kwargs):
        super().__init__(**kwargs)
        self.command = command
        self.groups = {}

    def group(self, title: str):
        """The argument group titled ``title`` (made on first use), for the help's sections."""
        if title not in self.groups:
            self.groups[title] = self.add_argument_group(title)
        return self.groups[title]

    @property
    def options(self) -> list:
        """The command's options as argparse actions (argparse keeps them in a private list)."""
        return self._actions

    def takes(self, option: str) -> bool:
        return any(option in action.option_strings for action in self.options)

    def parse_args(self, args=None, namespace=None, **kwargs):
        parsed = super().parse_args(args, namespace, **kwargs)
        parsed.pop("config", None)
        for action in self.options:  # a config file's null only where the option can be None
            if parsed.get(action.dest, 0) is None and not _nullable(action):
                self.error(f"{action.option_strings[-1]} needs a value, not null")
        parsed.command = self.command
        return parsed

    def config_yaml(self, parsed) -> str:
        """``parsed`` as a YAML file of option values that ``--config`` reads back to the same namespace."""
        values = {key: str(value) if isinstance(value, PurePath) else value  # paths as the command line spells them
                  for key, value in vars(parsed).items() if key != "command"}
        return self.dump(jsonargparse.Namespace(**values), skip_validation=True)


def command_parser(command: str, module_name: str, description: str) -> CommandParser:
    """The parser of ``command``, whose module (under ``snnbench``) adds its options."""
    module = importlib.import_module(f"snnbench.{module_name}")
    parser = CommandParser(command, prog=f"snnbench {command}", description=description, formatter_class=HelpFormatter)
    parser.add_argument("--config", action=jsonargparse.ActionConfigFile,
                        help="a YAML file of option values (a run's logged config.yaml replays that run)")
    module.add_arguments(parser, command)
    parser.add_argument(VERBOSE, action="store_true",
                        help="show the libraries' start-up messages (TensorFlow, nengo-dl, MLflow's database)")
    for action in parser.options:
        action.type = _reparsable(action.type)
    return parser


def benchmark_parser(command: str) -> CommandParser:
    return command_parser(command, *BENCHMARKS[command])
