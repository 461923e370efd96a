"""Project wiring: pins agree, every entry point has its script and command, every command has help."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from snnbench.cli import ALIASES, COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _pins(requirements):
    return {r.split("==")[0].lower(): r.split("==")[1] for r in requirements if "==" in r}


def test_pyproject_and_conda_pins_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    conda_pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert _pins(project["dependencies"]) == _pins(conda_pip)
    assert len(_pins(project["dependencies"])) == len(project["dependencies"])


def test_every_entry_point_runs_a_known_command():
    entry_points = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    assert "noise_sweep" in entry_points
    for name, spec in entry_points.items():
        script = spec["command"].split()[1]
        assert (REPO / script).exists(), f"{name}: {script} missing"
        assert ALIASES.get(name, name) in COMMANDS
        for param in spec.get("parameters", {}):
            assert "{" + param + "}" in spec["command"], f"{name}: parameter {param} unused"
    expected = {name for name in COMMANDS} - {"tune"} | {"tune_conversion"}
    assert set(entry_points) == expected


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert f"snnbench {command}" in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_text(command):
    parser = build_parser(command)
    silent = [a.option_strings[-1] for a in parser._actions if a.option_strings and not a.help]
    assert not silent, f"snnbench {command}: options without help: {silent}"


def test_unknown_command_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "snnbench.cli", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.splitlines()[0] == "snnbench: error: unknown command 'nope'"
