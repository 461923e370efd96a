"""A command's parser, made of its settings (:func:`snnbench.config.command_options`): a jsonargparse
parser, so every command also takes ``--config FILE`` (a YAML file of option values, e.g. a run's
logged ``config.yaml``, which replays it) and ``--print_config``. ``--help`` shows each default as
the command line spells it.
"""

import argparse
import importlib
from dataclasses import fields
from pathlib import PurePath

import jsonargparse

from snnbench.config import add_options

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
    """A command's parser, made of its ``Options`` (``options_class``): :meth:`settings` turns what it
    parsed into them. Its namespace carries ``command`` and not the ``--config`` file names."""

    def __init__(self, command: str, options_class: type, **kwargs):
        super().__init__(**kwargs)
        self.command = command
        self.options_class = options_class
        self.groups = {}
        self.exclusives = {}

    def group(self, title: str):
        """The argument group titled ``title`` (made on first use), for the help's sections."""
        if title not in self.groups:
            self.groups[title] = self.add_argument_group(title)
        return self.groups[title]

    def exclusive(self, name: str, group):
        """The mutually exclusive group ``name`` inside ``group`` (made on first use)."""
        if name not in self.exclusives:
            self.exclusives[name] = group.add_mutually_exclusive_group()
        return self.exclusives[name]

    def settings(self, parsed):
        """The command's ``Options`` of what :meth:`parse_args` returned: built once, checked once."""
        values = {k: v for k, v in vars(parsed).items() if k != "command"}
        names = {f.name for f in fields(self.options_class)}
        assert values.keys() == names, f"{self.command}: parsed {sorted(values.keys() ^ names)} beside its Options"
        return self.options_class(**values)

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
    """The parser of ``command``: the options of its module's ``OPTIONS[command]`` (module under ``snnbench``)."""
    module = importlib.import_module(f"snnbench.{module_name}")
    parser = CommandParser(command, module.OPTIONS[command], prog=f"snnbench {command}", description=description,
                           formatter_class=HelpFormatter)
    parser.add_argument("--config", action=jsonargparse.ActionConfigFile,
                        help="a YAML file of option values (a run's logged config.yaml replays that run)")
    add_options(parser, parser.options_class)
    for action in parser.options:
        action.type = _reparsable(action.type)
    return parser


