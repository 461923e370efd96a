"""``snnbench robustness`` end to end on tiny limits: the sweep's families as children, the verdict table on
the parent, the verdicts in the run's summary, and the report's robustness section."""

import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import require_data
from snnbench.benchmarks import robustness_claims as rc
from snnbench.benchmarks.claims import VERDICTS
from snnbench.cli.main import main
from snnbench.reporting.report import build_report

TINY = ["--test-limit", "60", "--train-limit", "300", "--epochs", "1", "--steps", "6", "--snn-steps", "3"]


@pytest.mark.slow
def test_robustness_decides_the_claims_of_the_families_it_ran_and_the_report_shows_them(tracking_store, tmp_path,
                                                                                         capsys):
    require_data()
    assert main(["robustness", "--modalities", "image", "--families", "ort-dnn,nengo-snn",
                 "--perturbations", "weight_noise,dead_neurons,rotate", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "Robustness claims: DNN's accuracy drop minus the SNN's" in printed
    assert "nengo-snn holds up better than its DNN under weight_noise" in printed

    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("robustness").experiment_id
    runs = client.search_runs([experiment])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.run_name == "robustness quick, 1 model seed"
    assert {(c.data.tags["perturbation"], c.data.tags["engine"]) for c in runs if c is not parent} == {
        (p, e) for p in ("none", "weight_noise", "dead_neurons", "rotate") for e in ("ort-dnn", "nengo-snn")}
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {rc.VERDICT_TABLE, rc.COMPARISON_TABLE, "accuracy_vs_level_weights.png",
            "accuracy_vs_level_input.png"} <= artifacts

    table = client.load_table(experiment, rc.VERDICT_TABLE, run_ids=[parent.info.run_id]).to_dict("records")
    for family in ("weight_noise", "dead_neurons"):
        parts = [r for r in table if r["family"] == family and r["snn"] == "nengo-snn"]
        assert {(p["model"], p["modality"]) for p in parts} == {("conversion-mlp", "image"), ("multimodal", "image")}
        assert all(p["verdict"] in VERDICTS and p["ci_low_pp"] <= p["difference_pp"] <= p["ci_high_pp"]
                   and p["repeats"] == 1 and p["n"] == 60 for p in parts)
        snntorch, = [r for r in table if r["family"] == family and r["snn"] == "snntorch-snn"]
        assert snntorch["verdict"] == rc.NOT_RUN and snntorch["not_run"] == "--families had no snntorch-snn"
    assert not any(r["family"] == "rotate" for r in table)  # an input corruption: compared, not claimed
    quantise = [r for r in table if r["family"] == "quantise"]
    assert quantise and all(r["not_run"] == "quantise was not in --perturbations" for r in quantise)
    compared = client.load_table(experiment, rc.COMPARISON_TABLE, run_ids=[parent.info.run_id])
    assert set(compared["perturbation"]) == {"weight_noise", "dead_neurons", "rotate"}
    claims_counted = sum(parent.data.metrics[f"claims.{v.replace(' ', '_')}"] for v in VERDICTS)
    assert claims_counted == 2  # weight_noise and dead_neurons on nengo-snn

    report = build_report([tracking_store], "r", tmp_path / "reports").read_text()
    section = report[report.index("## Robustness"):]
    section = section[:section.index("\n## ", 1)]
    weight_noise = next(line for line in section.splitlines()
                        if line.startswith("| nengo-snn holds up better than its DNN under weight_noise |"))
    part = next(r for r in table if r["family"] == "weight_noise" and r["snn"] == "nengo-snn")
    assert f"**{part['verdict']}**" in weight_noise and "conversion-mlp/image: " in weight_noise
    assert "| rotate | nengo-snn |" in section and "--families had no snntorch-snn" in section
    assert "accuracy_vs_level_weights.png" in section and json.dumps(parent.info.run_id)[1:-1] in section


def test_the_report_says_plainly_when_no_robustness_run_exists(tmp_path):
    from snnbench.reporting.robustness_section import robustness_lines

    class NoRuns:
        def latest(self, benchmark, where=None):
            return None

    class Context:
        store = NoRuns()

    lines = robustness_lines(Context())
    assert "_No robustness runs yet: run `snnbench robustness` (or `snnbench noise_sweep --perturbations all`)._" \
        in lines
