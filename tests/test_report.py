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
    assert main([*CONVERT, "--method", "calibrated"]) == 0
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


def study_rows(seeds=(0, 1, 2), n=1000) -> list:
    """Rows of a multimodal_study document: every model scores 99.0% under every noise, and so is its best
    validation accuracy, except image SNN S/3 (best validation 94.0%) and audio SNN S/3 (99, 97, 95% by seed)."""
    from snnbench.benchmarks.multimodal_grid import NOISES, run_row, study_specs

    rows = []
    for seed in seeds:
        for spec in study_specs():
            model = (spec.modality, spec.family, spec.size)
            correct = 990 - 20 * seed if model == ("audio", "snn", "S/3") else 990
            best_val = 0.94 if model == ("image", "snn", "S/3") else correct / n
            summary = {"best_val_accuracy": best_val, "best_epoch": 1, "history": [{"val_accuracy": best_val}],
                       "parameter_count": 1000, "hidden_width": 32, "n_train": 800, "n_val": 200}
            rows.append(run_row(spec, seed, summary, {name: (correct, n) for name in ("clean", *NOISES)}))
    return rows


def log_run(benchmark: str, params: dict, documents: dict | None = None, rows: list | None = None) -> str:
    """A finished run of ``benchmark`` in the test's store with these params, JSON documents and result table."""
    from snnbench.evaluation.harness import log_result_table
    from snnbench.tracking.runs import benchmark_run

    with benchmark_run(benchmark, params) as run:
        for name, document in (documents or {}).items():
            mlflow.log_dict(document, name)
        if rows:
            log_result_table(rows)
    return run.info.run_id


def report_context(uri: str, tmp_path):
    from snnbench.reporting.context import Context

    return Context(RunStore([uri]), tmp_path / "figures", "figures")


def table_row(lines: list, first_cells: str) -> list:
    """The cells of the one markdown table row that starts with ``first_cells`` (e.g. "| 4 | 4 |")."""
    found = [line for line in lines if line.startswith(first_cells)]
    assert len(found) == 1, found
    return [cell.strip() for cell in found[0].strip("|").split("|")]


def test_claims_section_gives_each_claims_verdict_under_both_protocols(tracking_store, tmp_path):
    """Claims that hold, do not hold and cannot be told apart, per protocol, with the estimates behind them."""
    from snnbench.benchmarks.multimodal_grid import STUDY_DOCUMENT
    from snnbench.reporting.claims_section import claims_lines

    document = {"meta": {}, "runs": study_rows(), "summary": []}
    ids = {v: log_run("multimodal_study", {"profile": "quick", "seeds": "[0, 1, 2]", "validation": v},
                      {STUDY_DOCUMENT: document}) for v in ("study", "recordings")}
    ctx = report_context(tracking_store, tmp_path)
    lines = claims_lines(ctx)

    # claim 12 (LIF and IF within 0.2 points): equal everywhere, so it holds under both protocols
    row = table_row(lines, "| 12 | 12 |")
    assert row[4] == row[6] == "**holds**"
    assert "image SNN LIF - IF: 0.00 [0.00, 0.00] (claimed -0.2 .. 0.2)" in row[3]
    # claim 4 (image SNN drops >= 2 points S -> S/3): only the best validation accuracy drops (by 5)
    row = table_row(lines, "| 4 | 4 |")
    assert row[3:] == ["image SNN S - S/3: 5.00 [5.00, 5.00] (claimed >= 2)", "**holds**",
                       "image SNN S - S/3: 0.00 [0.00, 0.00] (claimed >= 2)", "**does not hold**"]
    # claim 2 (audio SNN within 2 points over sizes): spreads 0, 2, 4 by seed, an interval across 2 (clipped at 0)
    row = table_row(lines, "| 2 | 4 |")
    assert row[3] == row[5] == "audio SNN max - min over sizes: 2.00 [0.00, 6.97] (claimed 0 .. 2)"
    assert row[4] == row[6] == "**cannot be told apart**"
    # claim 1 does not hold (image DNN S/3 is 99%, not about 95%) under both
    assert table_row(lines, "| 1 | 3 |")[4::2] == ["**does not hold**"] * 2

    assert "Verdicts that differ between the protocols: claims 4. Under the study's protocol" in "\n".join(lines)
    assert all(run_id in lines[-2] for run_id in ids.values()) and lines[-2].startswith("Runs: ")
    assert {r.id for r in ctx.used} == set(ids.values())


def test_claims_section_marks_a_protocol_without_a_run_as_not_run(tracking_store, tmp_path):
    """With only a held-out-recordings run (its document as the older results.json), study columns say not run."""
    from snnbench.reporting.claims_section import claims_lines

    log_run("multimodal_study", {"profile": "quick", "validation": "recordings"},
            {"results.json": {"runs": study_rows()}})
    lines = claims_lines(report_context(tracking_store, tmp_path))
    row = table_row(lines, "| 4 | 4 |")
    assert row[3:] == ["not run", "–", "image SNN S - S/3: 0.00 [0.00, 0.00] (claimed >= 2)", "**does not hold**"]
    assert not any(line.startswith("Verdicts that differ") for line in lines)


def test_the_study_section_pools_the_seeds_of_every_run_of_the_newest_runs_settings(tracking_store, tmp_path):
    """Seeds 0, 1 and 2, 3 of one protocol in two runs give one 4-seed table with both runs' training time; a
    run of the other protocol is left out of it."""
    from snnbench.benchmarks.multimodal_grid import STUDY_DOCUMENT
    from snnbench.reporting.report import multimodal_section

    def document(seeds, seconds):
        return {STUDY_DOCUMENT: {"meta": {"validation": "recordings", "train_seconds": seconds},
                                 "runs": study_rows(seeds), "summary": []}}

    params = {"profile": "full", "validation": "recordings"}
    other = log_run("multimodal_study", {**params, "validation": "study", "seeds": "[5, 6]"}, document((5, 6), 7.0))
    first = log_run("multimodal_study", {**params, "seeds": "[0, 1]"}, document((0, 1), 100.0))
    second = log_run("multimodal_study", {**params, "seeds": "[2, 3]"}, document((2, 3), 20.0))
    ctx = report_context(tracking_store, tmp_path)
    text = "\n".join(multimodal_section(ctx))
    assert "120 trainings (4 seeds: 0, 1, 2, 3)" in text and " in 120 s" in text
    # audio SNN S/3 scores 99, 97, 95, 93% by seed: the mean of the four with its t-interval
    assert "| audio | SNN | test accuracy | 99.00 [99.00, 99.00] | 99.00 [99.00, 99.00] | 96.00 [91.89, 100.00]" in text
    assert {r.id for r in ctx.used} == {first, second} and other not in text


def convert_row(engine: str, steps: int, correct: int, n: int, spikes=float("nan"), energy: float = 0.0):
    """One row of a ``convert`` run's result table: accuracy with its Wilson interval, spikes and energy per device."""
    from snnbench.evaluation.energy import DEVICES, column
    from snnbench.evaluation.harness import ResultKey, result_row
    from snnbench.evaluation.metrics import accuracy_interval

    return result_row(ResultKey("convert", engine, "conversion-mlp", "image", "calibrated", steps),
                      {**accuracy_interval(correct, n), "spikes_per_neuron_per_step": spikes,
                       **{column(d): energy * (i + 1) for i, d in enumerate(DEVICES)}})


def test_where_section_lists_each_engine_of_the_newest_loihi_runs(tracking_store, tmp_path):
    """The Loihi table: one row per engine of the newest nengo-loihi convert run of each network, none from others."""
    from snnbench.reporting.report import where_section

    loihi = {"profile": "quick", "method": "calibrated", "target": "nengo-loihi", "steps": "8"}
    log_run("convert", {**loihi, "arch": "mlp", "target": "nengo-dl"}, rows=[convert_row("nengo-snn", 8, 1, 100)])
    assert where_section(report_context(tracking_store, tmp_path))[-2].startswith(
        "_No runs yet: run `snnbench convert --target nengo-loihi`")  # a nengo-dl conversion is not shown
    log_run("convert", {**loihi, "arch": "mlp"}, rows=[convert_row("loihi-emulator", 8, 10, 100)])  # older
    rows = [convert_row("ort-dnn", 1, 976, 1000, spikes=0.42, energy=2e-6),
            convert_row("nengo-snn", 4, 951, 1000, spikes=0.031, energy=1.5e-7),
            convert_row("nengo-snn", 8, 968, 1000, spikes=0.0287, energy=3e-7),
            convert_row("loihi-emulator", 8, 190, 200, spikes=0.0291, energy=3.125e-7)]
    mlp = log_run("convert", {**loihi, "arch": "mlp"}, rows=rows)
    cnn = log_run("convert", {**loihi, "arch": "cnn"}, rows=[convert_row("loihi-emulator", 8, 97, 100, 0.05, 1e-6)])
    log_run("convert", {**loihi, "arch": "mlp", "onnx_model": "mine.onnx"},  # a user's network is not the MLP
            rows=[convert_row("loihi-emulator", 8, 5, 100)])
    ctx = report_context(tracking_store, tmp_path)
    lines = where_section(ctx)

    headers = [line for line in lines if line.startswith("| network | engine |")]
    assert len(headers) == 2 and headers[0] == headers[1]  # a table per network
    header = table_row(headers[:1], "| network |")
    assert header[:6] == ["network", "engine", "test images", "steps", "accuracy [95% CI]", "spikes"]
    assert header[6:] == ["J/sample, cmos45_fp32", "J/sample, cmos45_int8", "J/sample, cpu", "J/sample, gpu",
                          "J/sample, loihi", "J/sample, spinnaker2"]
    assert table_row(lines, "| MLP | ONNX Runtime (DNN) |")[2:6] == ["1000", "1", with_interval(rows[0]), "0.42"]
    assert table_row(lines, "| MLP | nengo-dl (SNN) | 1000 | 4 |")[4:] == [
        with_interval(rows[1]), "0.031", "1.5e-07", "3e-07", "4.5e-07", "6e-07", "7.5e-07", "9e-07"]
    assert table_row(lines, "| MLP | Loihi emulator (SNN) |")[2:7] == ["200", "8", "95.00% [91.04, 97.26]",
                                                                       "0.0291", "3.125e-07"]
    assert len(table_row(lines, "| MLP | nengo-dl (SNN) | 1000 | 8 |")) == 12
    assert table_row(lines, "| CNN | Loihi emulator (SNN) |")[2:4] == ["100", "8"]
    assert sum(line.startswith("| MLP |") for line in lines) == 4  # the newest MLP run only; no nengo-dl target
    assert lines[-2].startswith("Runs: ") and mlp in lines[-2] and cnn in lines[-2]
    assert [r.id for r in ctx.used] == [mlp, cnn]


def test_claims_section_checks_the_conversion_claim_against_the_newest_conversions(tracking_store, tmp_path):
    """The conversion row as the newest calibrated conversion loses 2, about 0.5, then 0.05 points; the reference 4."""
    from snnbench.reporting.claims_section import claims_lines

    def convert(method: str, snn_correct: int):
        rows = [convert_row("ort-dnn", 1, 9900, 10000), convert_row("nengo-snn", 32, snn_correct, 10000)]
        log_run("convert", {"profile": "quick", "method": method, "arch": "mlp", "steps": "32"}, rows=rows)

    convert("reference", 9500)
    convert("calibrated", 9700)  # loses 2 points as well: the claim does not hold
    row = table_row(claims_lines(report_context(tracking_store, tmp_path)), "| C | – |")
    assert row[3] == "reference at 32 steps: loss 4.00 [3.53, 4.47]; calibrated at 32 steps: loss 2.00 [1.61, 2.39]"
    assert row[4] == row[6] == "**does not hold**"
    convert("calibrated", 9860)  # loses 0.40 [0.10, 0.70]: within 0.5 points or not
    row = table_row(claims_lines(report_context(tracking_store, tmp_path)), "| C | – |")
    assert row[3].endswith("calibrated at 32 steps: loss 0.40 [0.10, 0.70]")
    assert row[4] == row[6] == "**cannot be told apart**"
    convert("calibrated", 9895)  # loses 0.05 [-0.23, 0.33]
    row = table_row(claims_lines(report_context(tracking_store, tmp_path)), "| C | – |")
    assert row[3].endswith("calibrated at 32 steps: loss 0.05 [-0.23, 0.33]")
    assert row[4] == row[6] == "**holds**"
    convert("corrected", 9890)  # convert's default where it applies is read beside calibrated
    row = table_row(claims_lines(report_context(tracking_store, tmp_path)), "| C | – |")
    assert row[3].endswith("calibrated at 32 steps: loss 0.05 [-0.23, 0.33]; corrected at 32 steps: loss 0.10 "
                           "[-0.18, 0.38]")


def test_the_conversion_claim_reads_every_method_at_the_reference_runs_steps(tracking_store, tmp_path):
    """Like with like: each method's loss at the reference run's steps (not the fewest of its curve), with the
    paired interval where the run logged one."""
    from snnbench.reporting.claims_section import NO_STUDY_RUNS, claims_lines

    dnn = convert_row("ort-dnn", 1, 9900, 10000)
    log_run("convert", {"profile": "quick", "method": "reference", "arch": "mlp", "steps": "32"},
            rows=[dnn, convert_row("nengo-snn", 4, 8000, 10000), convert_row("nengo-snn", 32, 9700, 10000)])
    paired = {"paired_loss": 0.0005, "paired_loss_ci_low": -0.0004, "paired_loss_ci_high": 0.0012}
    log_run("convert", {"profile": "quick", "method": "calibrated", "arch": "mlp", "steps": "8"},
            rows=[dnn, convert_row("nengo-snn", 4, 9000, 10000), convert_row("nengo-snn", 8, 9890, 10000),
                  convert_row("nengo-snn", 32, 9895, 10000).with_extras(**paired)])
    lines = claims_lines(report_context(tracking_store, tmp_path))
    assert lines[-2] == NO_STUDY_RUNS  # conversions alone: their row, and what to run for the study's claims
    row = table_row(lines, "| C | – |")
    # the reference run logged no paired interval: its two Wilson intervals combined; the calibrated its paired one
    assert row[3] == "reference at 32 steps: loss 2.00 [1.61, 2.39]; calibrated at 32 steps: loss 0.05 [-0.04, 0.12]"
    assert row[4] == "**holds**"


def test_claims_section_without_any_run_says_what_to_run(tracking_store, tmp_path):
    """A store without study or conversion runs: one line naming the runs to make, no table, no empty run list."""
    from snnbench.reporting.claims_section import NO_STUDY_RUNS, claims_lines

    log_run("throughput", {"profile": "quick"})
    lines = claims_lines(report_context(tracking_store, tmp_path))
    assert lines[-2] == NO_STUDY_RUNS and not any(line.startswith(("|", "Runs:")) for line in lines)


def test_user_models_section_has_a_row_per_model_data_set_and_step_count(tracking_store, tmp_path):
    """A user's models get their own rows, each naming its data set; the newest run of a file and data set counts."""
    from snnbench.reporting.report import user_models_section

    base = {"profile": "quick", "method": "calibrated"}
    log_run("convert", {**base, "arch": "mlp"}, rows=[convert_row("ort-dnn", 1, 9, 10)])  # the project's: not here
    assert user_models_section(report_context(tracking_store, tmp_path)) == []  # no user's model: no section
    log_run("convert", {**base, "onnx_model": "nets/mine.onnx", "dataset": "digits.npz"},
            rows=[convert_row("ort-dnn", 1, 1, 10), convert_row("nengo-snn", 8, 1, 10)])  # older
    newest = log_run("convert", {**base, "onnx_model": "nets/mine.onnx", "dataset": "digits.npz"},
                     rows=[convert_row("ort-dnn", 1, 98, 100), convert_row("nengo-snn", 8, 97, 100),
                           convert_row("nengo-snn", 32, 98, 100)])
    other = log_run("convert", {**base, "onnx_model": "keras.onnx", "dataset": "mnist"},
                    rows=[convert_row("ort-dnn", 1, 90, 100), convert_row("nengo-snn", 8, 85, 100)])
    lines = user_models_section(report_context(tracking_store, tmp_path))
    assert table_row(lines, "| `mine.onnx` | digits.npz | 8 |")[5] == "1.00"
    assert table_row(lines, "| `mine.onnx` | digits.npz | 32 |")[5] == "0.00"
    assert table_row(lines, "| `keras.onnx` | mnist | 8 |")[5] == "5.00"
    assert sum(line.startswith("| `mine.onnx`") for line in lines) == 2
    assert newest in lines[-2] and other in lines[-2]
