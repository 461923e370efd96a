"""`snnbench report`: one-line error on a missing or empty store; on real runs (a tiny `convert` in
one store, a tiny `throughput` in another) the report's tables hold the runs' metrics, its figures
exist, and its header gives the commands that reproduce the runs."""

import shlex
from pathlib import Path

import mlflow
import pytest

from conftest import require_data
from snnbench.cli import build_parser, main
from snnbench.commands import command_line
from snnbench.reporting import pct
from snnbench.runstore import RunStore
from snnbench.tracking import tracking_uri

CONVERT = ["convert", "--epochs", "1", "--train-limit", "300", "--test-limit", "40", "--steps", "5",
           "--steps-list", "2,5", "--minibatch", "20", "--rate-scale", "1"]
THROUGHPUT = ["throughput", "--epochs", "1", "--train-limit", "300", "--backends", "ort,snntorch", "--steps", "2",
              "--batch-sizes", "1,4", "--warmup", "0", "--repeats", "2", "--threads", "1"]


def own_lines(stderr: str) -> list:
    """The command's own lines (MLflow's INFO log lines left out)."""
    return [line for line in stderr.splitlines() if line.startswith("snnbench")]


def test_missing_store_is_a_one_line_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["report", "--tracking-uri", missing]) == 2
    errors = own_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no tracking store" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_empty_store_is_a_one_line_error_and_writes_nothing(tracking_store, tmp_path, capsys):
    mlflow.set_experiment("convert")  # a store with an experiment but no finished run
    assert main(["report", "--name", "empty"]) == 2
    errors = own_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no finished snnbench runs" in errors[0]
    assert not (tmp_path / "reports").exists()


def test_bad_report_name_is_refused(tracking_store, capsys):
    assert main(["report", "--name", "../x"]) == 2
    assert "--name" in capsys.readouterr().err


def test_command_line_round_trips_through_the_parser():
    argv = ["--steps", "2,4", "--backends", "ort,snntorch", "--repeats", "7", "--seed", "3"]
    args = vars(build_parser("throughput").parse_args(argv))
    params = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in args.items()
              if not k.startswith("_") and k != "command"}
    params["steps"] = "[2, 4]"  # lists are logged as JSON
    words = shlex.split(command_line("throughput", params))
    assert words[:2] == ["snnbench", "throughput"]
    again = vars(build_parser("throughput").parse_args(words[2:]))
    assert {k: again[k] for k in args if not k.startswith("_")} == {k: args[k] for k in args if not k.startswith("_")}
    assert "--warmup" not in words  # left at its default
    assert command_line("tune_conversion", {"seed": "0", "profile": "quick"}).startswith("snnbench tune ")


@pytest.mark.slow
def test_report_from_real_runs_in_two_stores(tracking_store, tmp_path, monkeypatch):
    require_data()
    assert main(CONVERT) == 0
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert main(THROUGHPUT) == 0

    assert main(["report", "--name", "tiny", "--tracking-uri", f"{tracking_store},{other}"]) == 0
    text = (tmp_path / "reports" / "tiny.md").read_text()
    convert = RunStore([tracking_store]).latest("convert")
    throughput = RunStore([other]).latest("throughput")

    # conversion table: the run's own metrics, next to the reference study's figures
    row = next(line for line in text.splitlines() if line.startswith("| untuned"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "rate_scale=1.0, gain=1.0, bias_scale=1.0, neuron=lif"
    assert cells[2:7] == ["5", "40", pct(convert.metrics["dnn_accuracy"]), pct(convert.metrics["snn_accuracy"]),
                          f"{convert.metrics['conversion_loss_pp']:.2f}"]
    assert "| reference study | – | – | – | 91.32% | 87.67% | 3.65 | – |" in text
    assert convert.id in text and throughput.id in text

    # throughput table: one line per timed point, with its median rate
    table = throughput.table("throughput.json")
    lines = [line for line in text.splitlines() if line.startswith(("| ort ", "| snntorch "))]
    assert len(lines) == len(table) == 4
    snn = table[(table.backend == "snntorch") & (table.batch_size == 4)].iloc[0]
    assert f"| snntorch | 2 | 4 | {snn.samples_per_s_median:,.0f} |" in text or \
        f"| snntorch | 2 | 4 | {snn.samples_per_s_median:.3g} |" in text

    # sections without runs say what to run; figures sit beside the markdown
    assert "_No runs yet: run `snnbench noise_sweep`._" in text
    figures = tmp_path / "reports" / "tiny"
    for name in ("conversion_accuracy.png", "conversion_accuracy_vs_steps.png", "throughput.png"):
        assert (figures / name).stat().st_size > 1000 and f"(tiny/{name})" in text

    # header: each run's command, with its store, re-creates the run's options
    header = text.split("```sh\n")[1].split("```")[0].splitlines()
    assert header[0] == f"MLFLOW_TRACKING_URI={tracking_store} snnbench convert --seed 0 --profile quick " \
        "--epochs 1 --train-limit 300 --rate-scale 1.0 --steps 5 --steps-list 2,5 --minibatch 20 --test-limit 40"
    assert header[1].startswith(f"MLFLOW_TRACKING_URI={other} snnbench throughput ")
    assert "--backends ort,snntorch" in header[1] and "--batch-sizes 1,4" in header[1]
    assert header[-1] == f"snnbench report --name tiny --tracking-uri {tracking_store} --tracking-uri {other}"
    assert Path(tmp_path / "reports").is_dir()


def test_run_choice_prefers_the_newest_full_profile_run(tracking_store):
    from snnbench.tracking import benchmark_run

    ids = {}
    for profile in ("full", "quick"):
        with benchmark_run("demo", {"profile": profile}) as run:
            ids[profile] = run.info.run_id
    assert RunStore([tracking_store]).latest("demo").id == ids["full"]
    assert RunStore([tracking_store], prefer_full=False).latest("demo").id == ids["quick"]
    assert RunStore([tracking_store]).latest("demo", where=lambda r: r.params["profile"] == "quick").id == ids["quick"]
    assert RunStore([tracking_store]).latest("no_such_benchmark") is None


def test_reproduce_plans_every_benchmark_then_the_report(capsys):
    assert main(["reproduce", "--dry-run", "--profile", "full", "--seed", "3", "--device", "cpu",
                 "--skip", "tune"]) == 0
    lines = capsys.readouterr().out.splitlines()
    commands = [shlex.split(line)[1] for line in lines]
    assert commands[0] == "convert" and "--rate-scale" in lines[0] and commands[-1] == "report"
    assert "tune" not in commands and {"noise_sweep", "size_sweep", "timestep_sweep", "throughput"} <= set(commands)
    assert all("--profile full --seed 3" in line for line in lines[:-1])
    assert "--device" not in lines[0]  # convert has no --device option
    assert "--device cpu" in next(line for line in lines if " throughput " in line)
    assert lines[-1] == "snnbench report --name full"
    assert main(["reproduce", "--dry-run", "--only", "throughput", "--extra-stores", "sqlite:////gpu/mlflow.db"]) == 0
    report = capsys.readouterr().out.splitlines()[-1]
    assert report.endswith(f"--tracking-uri {tracking_uri()},sqlite:////gpu/mlflow.db")
