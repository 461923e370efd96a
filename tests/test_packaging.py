"""Project wiring: pins agree, every entry point has its script and command, every command has help."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from snnbench.cli import mlproject
from snnbench.cli.main import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _pins(requirements):
    return {r.split("==")[0].lower(): r.split("==")[1] for r in requirements if "==" in r}


def test_pyproject_and_conda_pins_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    conda_pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert _pins(project["dependencies"]) == _pins(conda_pip)
    assert len(_pins(project["dependencies"])) == len(project["dependencies"])


def test_mlproject_is_generated_from_the_command_line():
    """One definition: MLproject is what the parsers generate (regenerate: python -m snnbench.cli.mlproject > MLproject)."""
    assert (REPO / "MLproject").read_text() == mlproject.render()
    entry_points = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    assert set(entry_points) == {mlproject.entry_point_name(c) for c in COMMANDS}
    for name, spec in entry_points.items():
        assert (REPO / spec["command"].split()[1]).exists(), name
        # every declared default reads back as the command's own default
        parser = build_parser(mlproject.command_name(name))
        given = parser.parse_args([f"--{p.replace('_', '-')}={v['default']}" for p, v in spec["parameters"].items()])
        assert vars(given) == vars(parser.parse_args([])), name


def test_profile_dependent_options_pass_through_mlflow():
    """MLflow appends an undeclared -P test_limit=7 as '--test_limit 7': it reaches the option."""
    parser = build_parser("noise_sweep")
    assert "test_limit" not in yaml.safe_load(mlproject.render())["entry_points"]["noise_sweep"]["parameters"]
    assert parser.parse_args(mlproject.cli_words(["--test_limit", "7", "--stds=0,1"])).test_limit == 7


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert f"snnbench {command}" in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_text(command):
    parser = build_parser(command)
    silent = [a.option_strings[-1] for a in parser.options if a.option_strings and not a.help]
    assert not silent, f"snnbench {command}: options without help: {silent}"


def test_unknown_command_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "snnbench.cli.main", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.splitlines()[0] == "snnbench: error: unknown command 'nope'"


@pytest.mark.parametrize("command, argv", [
    ("noise_sweep", ["--stds", "0,0.5", "--positions", "input", "--seeds", "2", "--test-limit", "50"]),
    ("convert", ["--steps-list", "4,8", "--method", "reference", "--percentile", "max"]),
    ("multimodal_study", ["--seeds", "0,2", "--resume", "--modalities", "audio"]),
    ("size_sweep", ["--epochs", "3"]),
    ("tune", ["--best-params-out", "some/best.json", "--n-trials", "3"]),  # a path-typed option
])
def test_a_commands_config_file_replays_its_options(command, argv, tmp_path):
    parser = build_parser(command)
    parsed = parser.parse_args(argv)
    (tmp_path / "config.yaml").write_text(parser.config_yaml(parsed))
    assert build_parser(command).parse_args(["--config", str(tmp_path / "config.yaml")]) == parsed
    assert "config" not in parsed and parsed.command == command  # no file name of this machine in the params
    with pytest.raises(SystemExit):  # a config file is checked like the command line
        (tmp_path / "bad.yaml").write_text("seed: -x\n")
        build_parser(command).parse_args(["--config", str(tmp_path / "bad.yaml")])


def test_a_config_files_null_is_refused_where_the_option_cannot_be_none(tmp_path, capsys):
    (tmp_path / "null.yaml").write_text("train_limit: null\n")
    with pytest.raises(SystemExit):
        build_parser("convert").parse_args(["--config", str(tmp_path / "null.yaml")])
    assert "--train-limit needs a value, not null" in capsys.readouterr().err
    (tmp_path / "none.yaml").write_text("bias_offset: null\nn_trials: null\n")  # 'off' and 'auto' read as None
    parsed = build_parser("tune").parse_args(["--config", str(tmp_path / "none.yaml")])
    assert parsed.bias_offset is None and parsed.n_trials is None


def test_reproduce_passes_the_device_only_to_benchmarks_that_take_it(capsys):
    assert main(["reproduce", "--dry-run", "--device", "cpu", "--only", "convert,noise_sweep"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("snnbench ")]
    assert lines[0].startswith("snnbench convert ") and "--device" not in lines[0]  # convert takes none
    assert lines[1].startswith("snnbench noise_sweep ") and lines[1].endswith("--device cpu")
