"""Settings as data (snnbench.config): a dataclass field is one option, read back into its dataclass."""

import dataclasses
from dataclasses import dataclass

import jsonargparse
import pytest

from snnbench.command_line import command_parser
from snnbench.cli.main import COMMANDS
from snnbench.config import Take, add_options, auto, check_choices, command_options, from_args, option, positive
from snnbench.conversion.nengo_net import SimConfig
from snnbench.errors import ConfigError
from snnbench.noise import NoiseSpec


@dataclass(frozen=True)
class Example:
    rate: float = option(1.5, "a rate", positive(float), group="numbers")
    mode: str = option("fast", "a mode", choices=("fast", "slow"), flag="run_mode")
    steps: int | None = option(None, "steps (auto: the profile's)", auto(int))
    internal: int = 3  # not an option

    def __post_init__(self):
        check_choices(self)


class Parser(jsonargparse.ArgumentParser):
    def group(self, title):
        self.titles = getattr(self, "titles", {})
        return self.titles.setdefault(title, self.add_argument_group(title))


def test_fields_become_options_and_come_back():
    parser = Parser()
    add_options(parser, Example, rate=2.0)  # a command's own default
    assert parser.parse_args([]).rate == 2.0
    args = parser.parse_args(["--rate", "0.5", "--run-mode", "slow", "--steps", "auto"])
    assert (args.rate, args.run_mode, args.steps) == (0.5, "slow", None)
    assert from_args(Example, args, internal=7) == Example(rate=0.5, mode="slow", steps=None, internal=7)
    assert "numbers" in parser.titles and not hasattr(args, "internal")
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate", "-1"])


def test_choices_are_checked_where_declared():
    with pytest.raises(ConfigError, match="unknown run mode 'medium'; use one of fast, slow"):
        Example(mode="medium")
    with pytest.raises(ConfigError, match="unknown readout 'first'"):
        SimConfig(readout="first")
    with pytest.raises(ConfigError, match="unknown noise position"):
        NoiseSpec(position="output")


def test_concepts_are_built_from_a_commands_options():
    args = command_parser("convert", *COMMANDS["convert"]).parse_args(["--dt", "0.002", "--readout", "last",
                                                                       "--steps", "12"])
    assert from_args(SimConfig, args, seed=4) == SimConfig(steps=12, dt=0.002, readout="last", seed=4)
    args = command_parser("multimodal", *COMMANDS["multimodal"]).parse_args(["--noise-std", "0.3",
                                                                             "--noise-position", "post"])
    assert from_args(NoiseSpec, args) == NoiseSpec(std=0.3, position="post", mode="per_step", seed=0)


PARSERS_OWN = {"--help", "--config", "--print_config", "--print_shtab"}  # jsonargparse's


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_comes_from_a_dataclass_field(command):
    parser = command_parser(command, *COMMANDS[command])
    undeclared = [a.option_strings[-1] for a in parser.options if not hasattr(a, "declared_by")
                  and a.option_strings[-1] not in PARSERS_OWN]
    assert undeclared == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_gets_its_options_as_one_frozen_object(command):
    parser = command_parser(command, *COMMANDS[command])
    options = parser.settings(parser.parse_args([]))
    assert isinstance(options, parser.options_class) and dataclasses.is_dataclass(options)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.verbose = True
    assert {f.name for f in dataclasses.fields(options)} == {a.dest for a in parser.options if hasattr(a, "declared_by")}


def test_a_command_takes_some_fields_of_an_option_set_with_its_own_defaults():
    Options = command_options("ExampleOptions", Take(Example, ["rate", "mode"], defaults={"rate": 2.0}), doc="an example")
    assert [f.name for f in dataclasses.fields(Options)] == ["rate", "run_mode", "verbose"]
    assert Options().rate == 2.0 and from_args(Example, Options(run_mode="slow")) == Example(rate=2.0, mode="slow")
    with pytest.raises(ConfigError, match="unknown run mode"):
        Options(run_mode="medium")
    with pytest.raises(TypeError, match="taken twice"):
        command_options("Twice", Example, Take(Example, ["rate"]), doc="")
