"""`snnbench report`: one-line error on a missing or empty store; on real runs (a tiny `convert` in
one store, a tiny `throughput` in another) the report's tables hold the runs' metrics, its figures
exist, and its header gives the commands that reproduce the runs."""

import shlex

import mlflow
import pytest

from conftest import require_data
from snnbench.cli.main import build_parser, main
from snnbench.reporting.commands import command_line
from snnbench.evaluation.harness import RESULT_TABLE
from snnbench.reporting.context import pct, with_interval
from snnbench.tracking.runstore import RunStore
from snnbench.tracking.runs import tracking_uri

CONVERT = ["convert", "--epochs", "1", "--train-limit", "300", "--test-limit", "40", "--steps", "5",
           "--steps-list", "2,5", "--minibatch", "20", "--calibration-samples", "200"]
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
    shown = command_line("convert", {"seed": "0", "profile": "full", "onnx_model": "/home/someone/nets/vgg.onnx"})
    assert "--onnx-model vgg.onnx" in shown and "/home" not in shown  # no path of the machine
    assert "--onnx-model runs/vgg.onnx" in command_line("convert", {"onnx_model": "runs/vgg.onnx"})


@pytest.mark.slow
def test_report_from_real_runs_in_two_stores(tracking_store, tmp_path, monkeypatch):
    require_data()
    assert main([*CONVERT, "--method", "reference"]) == 0
    assert main(CONVERT) == 0  # calibrated, the default
    other = f"sqlite:///{tmp_path / 'gpu' / 'other.db'}"
    (tmp_path / "gpu").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert main(THROUGHPUT) == 0

    assert main(["report", "--name", "tiny", "--tracking-uri", f"{tracking_store},{other}"]) == 0
    text = (tmp_path / "reports" / "tiny.md").read_text()
    store = RunStore([tracking_store])
    throughput = RunStore([other]).latest("throughput")

    # conversion table: each method's rows are its run's result table, with 95% intervals
    for method in ("reference", "calibrated"):
        run = store.latest("convert", where=lambda r, m=method: r.params["method"] == m)
        table = run.table(RESULT_TABLE)
        dnn = table[table.engine == "ort-dnn"].iloc[0]
        for steps in (2, 5):
            snn = table[(table.engine == "nengo-snn") & (table.steps == steps)].iloc[0]
            row = next(line for line in text.splitlines() if line.startswith(f"| {method} | {steps} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[2] == with_interval(snn.to_dict()) and cells[3] == with_interval(dnn.to_dict())
            assert cells[4] == f"{100 * (dnn.accuracy - snn.accuracy):.2f}" and cells[-1] == f"`{run.id[:8]}`"
            assert f"[{100 * snn.accuracy_ci_low:.2f}, {100 * snn.accuracy_ci_high:.2f}]" in cells[2]
        assert run.id in text
    assert "| reference study | – | 87.67% | 91.32% | 3.65 |" in text
    assert "_No `tuned` conversion yet: run `snnbench convert --method tuned`._" in text

    # throughput table: one line per timed point, with its median rate and the accuracy of what was timed
    table = throughput.table("throughput.json")
    lines = [line for line in text.splitlines() if line.startswith(("| ort ", "| snntorch "))]
    assert len(lines) == len(table) == 4
    snn = table[(table.backend == "snntorch") & (table.batch_size == 4)].iloc[0]
    line = next(line for line in lines if line.startswith("| snntorch | 2 | 4 |"))
    assert line.endswith(f"| {pct(snn.accuracy)} |")

    # sections without runs say what to run; figures sit beside the markdown
    assert "_No runs yet: run `snnbench noise_sweep`._" in text
    figures = tmp_path / "reports" / "tiny"
    for name in ("conversion_accuracy_vs_steps.png", "throughput.png"):
        assert (figures / name).stat().st_size > 1000 and f"(tiny/{name})" in text

    # header: stores by relative path (no machine path), each run's command re-creates its options
    assert str(tmp_path) not in text
    header = text.split("```sh\n")[1].split("```")[0].splitlines()
    assert header[0].startswith("MLFLOW_TRACKING_URI=sqlite:///mlflow.db snnbench convert --seed 0 --profile quick "
                                "--epochs 1 --train-limit 300 --method reference")
    assert header[2].startswith("MLFLOW_TRACKING_URI=sqlite:///gpu/other.db snnbench throughput ")
    assert "--backends ort,snntorch" in header[2] and "--batch-sizes 1,4" in header[2]
    assert header[-1] == "snnbench report --name tiny --tracking-uri sqlite:///mlflow.db,sqlite:///gpu/other.db"
    for line in header:  # every command runs as written
        words = shlex.split(line.split(" ", 1)[1] if line.startswith("MLFLOW_TRACKING_URI=") else line)
        build_parser(words[1]).parse_args(words[2:])
    # the runs come from this checkout: clean, or named as not
    commits = {r.tags["snnbench.git_commit"] for r in (*store.finished("convert"), throughput)}
    clean = all(not c.endswith("+dirty") and c != "unknown" for c in commits)
    assert ("Every run comes from a clean commit." in text) == clean
    assert ("Runs not made from a clean commit:" in text) == (not clean)


def test_run_choice_prefers_the_newest_full_profile_run(tracking_store):
    from snnbench.tracking.runs import benchmark_run

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
                 "--skip", "tune,convert_tuned"]) == 0
    lines = capsys.readouterr().out.splitlines()
    commands = [shlex.split(line)[1] for line in lines]
    assert commands[0] == "convert" and "--method reference" in lines[0] and commands[-1] == "report"
    assert "tune" not in commands and {"noise_sweep", "throughput", "multimodal_study"} <= set(commands)
    assert all("--profile full --seed 3" in line for line in lines[:-1])
    assert "--device" not in lines[0]  # convert has no --device option
    assert "--device cpu" in next(line for line in lines if " throughput " in line)
    assert lines[-1] == "snnbench report --name full"
    for line in lines[:-1]:  # every planned command parses
        words = shlex.split(line)
        build_parser(words[1]).parse_args(words[2:])
    assert main(["reproduce", "--dry-run", "--only", "throughput", "--extra-stores", "sqlite:///gpu/mlflow.db"]) == 0
    report = capsys.readouterr().out.splitlines()[-1]
    assert report.endswith(f"--tracking-uri {tracking_uri()},sqlite:///gpu/mlflow.db")


def test_scale_line_names_the_device_only_where_a_run_has_it():
    from types import SimpleNamespace

    from snnbench.reporting.context import DEVICE_TAG, scale_line

    tagged = SimpleNamespace(id="a1", params={"profile": "full"}, tags={DEVICE_TAG: "cuda", "snnbench.benchmark": "x"})
    untagged = SimpleNamespace(id="b2", params={"profile": "quick"}, tags={})
    assert scale_line([tagged, untagged]) == "Runs: `a1` (x; profile=full, device=cuda); `b2` (; profile=quick)."
