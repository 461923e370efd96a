"""The ``snnbench`` command line that produced a run, rebuilt from the run's logged params.

Each option of the benchmark's parser whose destination was logged as a param is written back
(lists as comma lists, true flags as bare flags); options left at their default are omitted,
except ``--profile`` and ``--seed`` which are always shown. An absolute path is shown as its file
name: the report names no path of the machine it was made on.
"""

import argparse
import json
import shlex
from pathlib import PurePosixPath, PureWindowsPath

from snnbench.benchmarks import ALIASES, BENCHMARKS, benchmark_parser
from snnbench.command_line import none_word

ALWAYS = ("profile", "seed")


def _as_cli_value(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return ",".join(str(v) for v in value) if isinstance(value, list) else text


def _without_machine_path(value: str) -> str:
    for path in (PurePosixPath(value), PureWindowsPath(value)):
        if path.is_absolute():
            return path.name
    return value


def _same(text: str, default) -> bool:
    if default is None:
        return text in ("None", "")
    if isinstance(default, (list, tuple)):
        return _as_cli_value(text) == ",".join(str(v) for v in default)
    return text == str(default)


def command_line(command: str, params: dict) -> str:
    """``snnbench COMMAND --opt value ...`` for a run of ``command`` with logged ``params``."""
    command = ALIASES.get(command, command)
    if command not in BENCHMARKS:
        return f"snnbench {command}  # (unknown command; params: {json.dumps(params, sort_keys=True)})"
    parser = benchmark_parser(command)
    words = ["snnbench", command]
    for action in parser.options:
        if not action.option_strings or action.dest not in params or isinstance(action, argparse._HelpAction):
            continue
        text = params[action.dest]
        if action.dest not in ALWAYS and _same(text, action.default):
            continue
        option = max(action.option_strings, key=len)
        if isinstance(action, argparse.BooleanOptionalAction):
            positive = next(o for o in action.option_strings if not o.startswith("--no-"))
            words.append(positive if text == "True" else positive.replace("--", "--no-", 1))
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if text == str(action.const):
                words.append(option)
        elif text == "None":  # the word this option's parser reads as None (e.g. 'off', 'auto'), else 'none'
            words += [option, (action.type and none_word(action.type)) or "none"]
        else:
            value = _without_machine_path(_as_cli_value(text))
            words += [f"{option}={value}"] if value.startswith("-") else [option, value]  # not read as an option
    return shlex.join(words)
