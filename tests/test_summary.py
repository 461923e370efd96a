"""Every command ends with a summary, and bad input leaves no run behind: a finished run prints its
name, id, headline tables, artifacts and how to open it in the MLflow UI; a failed one carries its
one-line reason and its name; a corrupt data file, an output path that cannot be written and a
tracking store that cannot be opened each cost one line and exit 2, before any run or work."""

import dataclasses
import gzip
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import require_data
from snnbench.cli import preflight
from snnbench.cli.main import main
from snnbench.errors import ConfigError, StorageError
from snnbench.tracking import runs as tracking
from snnbench.tracking import summary


def test_a_finished_run_prints_its_name_headline_artifacts_and_how_to_open_it(tracking_store, capsys):
    with tracking.benchmark_run("demo", {"profile": "quick", "seed": 3}) as run:
        mlflow.log_text("| a |", "demo.md")
        summary.headline("Clean accuracy, % [95% interval]",
                         pd.DataFrame([{"engine": "ort-dnn", "accuracy": summary.interval(0.978, 0.961, 0.988)}]))
        summary.headline("Empty", [])
    out = capsys.readouterr().out
    run_id, experiment_id = run.info.run_id, run.info.experiment_id
    assert f"Run 'demo quick, seed 3' (id {run_id}) finished." in out  # named for what it is
    assert "Clean accuracy, % [95% interval]\n  engine   accuracy\n  ort-dnn  97.8 [96.1, 98.8]" in out
    assert "Empty: none" in out
    folder = Path(tracking_store.removeprefix("sqlite:///")).parent
    assert "demo.md, config.yaml" not in out and "demo.md, environment.json" in out  # markdown and plots first
    assert f"mlflow ui --backend-store-uri sqlite:///{folder / 'mlflow.db'}" in out
    assert f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}" in out
    artifacts = MlflowClient(tracking_store).get_run(run_id).info.artifact_uri
    assert summary._artifact_folder(artifacts) in out and Path(summary._artifact_folder(artifacts)).is_dir()


def test_a_run_without_a_headline_shows_its_metrics(tracking_store, capsys):
    with tracking.benchmark_run("demo", {"seed": 0}, run_name="plain"):
        mlflow.log_metrics({f"m{i:02d}": i / 3 for i in range(15)})
    out = capsys.readouterr().out
    assert "Run 'plain'" in out and "m00     0" in out and "m11     3.66667" in out
    assert "m12" not in out and "(3 more in the run)" in out


def test_how_to_open_a_run_on_a_server_a_relative_store_and_a_password(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert summary.ui_lines("https://me:pw@mlflow.example/", "4", "abc") == \
        ["View the run at: https://me:***@mlflow.example/#/experiments/4/runs/abc"]
    local = summary.ui_lines("sqlite:///mlflow.db", "4", "abc")
    assert local[0].endswith(f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}")
    assert summary.ui_lines("postgresql://u:pw@db/x", "1", "r")[0].endswith("--backend-store-uri 'postgresql://u:***@db/x'")


def test_a_failed_run_carries_its_reason_and_its_name(tracking_store, capsys):
    client = MlflowClient(tracking_store)
    with pytest.raises(ConfigError):
        with tracking.benchmark_run("demo", {"seed": 0}, run_name="demo named") as run:
            raise ConfigError("--x must be >= 1\nsecond line")
    stored = client.get_run(run.info.run_id)
    assert stored.info.status == "FAILED" and stored.info.run_name == "demo named"
    assert stored.data.tags[tracking.FAILURE_TAG] == "--x must be >= 1"
    assert stored.data.tags[tracking.DESCRIPTION_TAG] == "Failed: --x must be >= 1"
    assert "Run 'demo named'" not in capsys.readouterr().out  # no summary of a failed run
    with pytest.raises(ZeroDivisionError):
        with tracking.benchmark_run("demo", {"seed": 1}) as run:
            1 / 0
    assert client.get_run(run.info.run_id).data.tags[tracking.FAILURE_TAG] == "ZeroDivisionError: division by zero"
    # reopened and finished, a sweep's run no longer says it failed
    with pytest.raises(ConfigError):
        with tracking.benchmark_run("sweep", {"seed": 0}, sweep=True, resume="stopped"):
            raise ConfigError("stopped")
    with tracking.benchmark_run("sweep", {"seed": 0}, sweep=True, resume="stopped") as again:
        pass
    tags = client.get_run(again.info.run_id).data.tags
    assert client.get_run(again.info.run_id).info.status == "FINISHED"
    assert tracking.FAILURE_TAG not in tags and tracking.DESCRIPTION_TAG not in tags


def _no_run(uri: str):
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert experiments == ["0"] and not client.search_runs(experiments)  # the default experiment, empty


def _one_line(capsys, argv, *words) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"snnbench {argv[0]}: error:"), err
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_a_truncated_mnist_file_is_one_line_before_any_run(tracking_store, tmp_path, monkeypatch, capsys):
    require_data()
    from snnbench.data import download, mnist

    source = download.data_root()[0] / "mnist"
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for name in mnist.FILES:
        shutil.copy(source / name, data / "mnist" / name)
    broken = data / "mnist" / "train-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:100_000])  # cut short: no gzip end marker
    monkeypatch.setenv(download.DATA_ENV, str(data))
    with pytest.raises(EOFError):
        gzip.open(broken).read()
    _one_line(capsys, ["convert", "--epochs", "1", "--test-limit", "20"], str(broken), "corrupt")
    _one_line(capsys, ["noise_sweep", "--modalities", "image", "--families", "ort-dnn"], "corrupt")
    _no_run(tracking_store)


def test_an_output_path_that_cannot_be_written_is_one_line_before_any_run(tracking_store, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _one_line(capsys, ["convert", "--nir-out", str(blocker / "sub" / "net.nir")], "--nir-out", "is a file")
    _one_line(capsys, ["convert", "--nir-out", str(tmp_path)], "--nir-out", "is a folder")
    _one_line(capsys, ["multimodal_study", "--results-out", str(blocker / "r.json")], "--results-out")
    _one_line(capsys, ["report", "--out-dir", str(blocker / "reports")], "--out-dir")
    _no_run(tracking_store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "mlflow.db"]


def test_writable_outputs_pass_and_leave_nothing(tmp_path):
    target = tmp_path / "new" / "folders" / "net.nir"
    outputs = dataclasses.make_dataclass("Outputs", ["nir_out", "out_dir", "seed"], frozen=True)  # a command's Options
    preflight.check_outputs(outputs(str(target), str(tmp_path / "reports"), 0))
    assert list(tmp_path.iterdir()) == []  # checked, nothing made


@pytest.mark.parametrize("store", ["sqlite:///{tmp}/a-file/mlflow.db", "nosuch://store", "http://127.0.0.1:9"])
def test_a_tracking_store_that_cannot_be_opened_is_one_line_before_any_work(store, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    uri = store.format(tmp=tmp_path)
    monkeypatch.setenv(tracking.URI_ENV, uri)
    monkeypatch.chdir(tmp_path)
    line = _one_line(capsys, ["convert", "--epochs", "1"], "tracking store", uri)
    assert tracking.URI_ENV in line
    with pytest.raises(StorageError):
        tracking.check_store(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written anywhere


def test_the_noise_sweeps_headline_clean_accuracy_largest_gaps_and_where_curves_fall(tracking_store, capsys):
    from snnbench.benchmarks import noise_sweep_tables as tables
    from snnbench.evaluation.robustness import Curve

    assert tables.falls_at(Curve.from_points([0.1, 0.5, 2], [0.95, 0.85, 0.2], 0.96)) == 0.5  # 11 points below
    assert tables.falls_at(Curve.from_points([0.1, 0.5], [0.95, 0.9], 0.96)) == float("inf")
    assert tables.falls_at(Curve.from_points([0.1, 0.5], [float("nan"), 0.9], 0.96)) == 0.1  # unknown: not held

    def cell(engine, position, std, accuracy):
        return {"engine": engine, "model": "mlp", "modality": "image", "noise_position": position, "noise_std": std,
                "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.01, "accuracy_ci_high": accuracy + 0.01}
    cells = [cell("ort-dnn", "none", 0.0, 0.97), cell("nengo-snn", "none", 0.0, 0.95),
             cell("ort-dnn", "input", 1.0, 0.90), cell("ort-dnn", "input", 2.0, 0.80),
             cell("nengo-snn", "input", 1.0, 0.80), cell("nengo-snn", "input", 2.0, 0.70)]
    gaps = [{"dnn": "ort-dnn", "snn": "nengo-snn", "model": "mlp", "modality": "image", "noise_position": p,
             "noise_std": s, "gap_pp": g, "ci_low_pp": g - 1, "ci_high_pp": g + 1}
            for p, s, g in (("none", 0.0, 2.0), ("input", 1.0, -10.0), ("input", 2.0, 1.0), ("input", 0.5, 4.0))]
    with tracking.benchmark_run("demo", {"seed": 0}):
        tables.headline(cells, gaps)
    out = capsys.readouterr().out
    assert ("  model  modality  ort-dnn            nengo-snn\n"
            "  mlp    image     97.0 [96.0, 98.0]  95.0 [94.0, 96.0]") in out
    shown = [line.split()[-3] for line in out.splitlines() if line.startswith("  ort-dnn  nengo-snn")]
    assert shown == ["-10.0", "+4.0", "+2.0"]  # the three largest by size, sign kept
    assert "  ort-dnn    mlp    image     2\n  nengo-snn  mlp    image     1" in out  # 17 and 15 points below
