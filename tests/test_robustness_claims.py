"""The robustness claims' verdicts on hand-made per-sample results: every verdict word reachable, a claim
whose family did not run or was refused said so, parts combined as the study's claims are."""

from dataclasses import replace

import numpy as np
import pytest

from snnbench.benchmarks import robustness_claims as rc
from snnbench.benchmarks.claims import VERDICTS
from snnbench.benchmarks.noise_sweep_models import Subject, SweepSettings

N = 200
HOLDS, DOES_NOT_HOLD, CANNOT = VERDICTS


def _row(engine, perturbation, correct, model="conversion-mlp", modality="image", level=0.0, noise_seed=0):
    return {"engine": engine, "model": model, "modality": modality, "perturbation": perturbation,
            "level": level, "model_seed": 0, "noise_seed": noise_seed, "correct": np.asarray(correct, bool)}


def _wrong_on(indices) -> np.ndarray:
    correct = np.ones(N, bool)
    correct[list(indices)] = False
    return correct


def _pair(family, dnn_wrong, snn_wrong, snn="nengo-snn", model="conversion-mlp", modality="image", level=0.1):
    """Clean children (every sample right) and one perturbed child per engine, wrong on the given samples."""
    return [_row("ort-dnn", "none", np.ones(N, bool), model, modality),
            _row(snn, "none", np.ones(N, bool), model, modality),
            _row("ort-dnn", family, _wrong_on(dnn_wrong), model, modality, level),
            _row(snn, family, _wrong_on(snn_wrong), model, modality, level)]


CONFIG = SweepSettings(perturbations=["weight_noise", "stuck_at_zero", "quantise"],
                       families=["ort-dnn", "nengo-snn", "snntorch-snn"], profile="quick", seed=0)
SUBJECTS = [Subject("ort-dnn", "conversion-mlp", "image"), Subject("nengo-snn", "conversion-mlp", "image"),
            Subject("snntorch-snn", "multimodal", "image")]


def _claim(table, family, snn="nengo-snn"):
    rows = [r for r in table if r["family"] == family and r["snn"] == snn]
    assert rows, f"no claim for {family} on {snn}"
    return rows


def test_each_verdict_word_is_reached_from_the_paired_drop_difference():
    rows = (_pair("weight_noise", range(100), [])               # the DNN loses 50 points, the SNN none
            + _pair("stuck_at_zero", [], range(100))[2:]         # the SNN loses 50 points, the DNN none
            + _pair("quantise", range(10), range(10, 20))[2:])   # each loses 5 points, on other samples
    table = rc.verdicts(rows, CONFIG, SUBJECTS)
    holds, = _claim(table, "weight_noise")
    assert holds["verdict"] == HOLDS and holds["part_verdict"] == HOLDS
    assert holds["difference_pp"] == pytest.approx(50) and holds["ci_low_pp"] > 0
    assert holds["drop_dnn_pp"] == pytest.approx(50) and holds["drop_snn_pp"] == pytest.approx(0)
    assert holds["levels"] == "0.1" and holds["dnn"] == "ort-dnn" and holds["model"] == "conversion-mlp"
    worse, = _claim(table, "stuck_at_zero")
    assert worse["verdict"] == DOES_NOT_HOLD and worse["ci_high_pp"] < 0
    even, = _claim(table, "quantise")
    assert even["verdict"] == CANNOT and even["ci_low_pp"] < 0 < even["ci_high_pp"]


def test_no_sample_changed_is_not_holding_up_better():
    rows = _pair("weight_noise", [], [])
    row, = _claim(rc.verdicts(rows, CONFIG, SUBJECTS), "weight_noise")
    assert row["difference_pp"] == 0 and row["verdict"] == DOES_NOT_HOLD


def test_the_clean_gap_does_not_decide_the_claim():
    """The SNN starts 10 points lower and both lose the same samples: not better, not worse."""
    rows = _pair("weight_noise", range(50), range(50))
    rows[1] = _row("nengo-snn", "none", _wrong_on(range(150, 170)))
    rows[3] = _row("nengo-snn", "weight_noise", _wrong_on([*range(50), *range(150, 170)]), level=0.1)
    row, = _claim(rc.verdicts(rows, CONFIG, SUBJECTS), "weight_noise")
    assert row["difference_pp"] == pytest.approx(0) and row["verdict"] == DOES_NOT_HOLD


def test_a_part_where_both_engines_are_fooled_on_nearly_every_sample_is_left_out():
    saturated = _pair("weight_noise", range(N), range(N), model="multimodal", modality="audio")
    saturated[0]["correct"] = _wrong_on(range(20))  # the DNN's clean accuracy 10 points lower: its drop smaller
    holds_on_images = _pair("weight_noise", range(100), [])
    parts = _claim(rc.verdicts(holds_on_images + saturated, CONFIG, SUBJECTS), "weight_noise")
    audio = next(p for p in parts if p["modality"] == "audio")
    assert audio["saturated"] and audio["part_verdict"] == DOES_NOT_HOLD  # the clean gap, read as a drop
    assert all(p["verdict"] == HOLDS for p in parts)  # decided by the informative part alone
    claim, = [c for c in rc.claim_rows(rc.verdicts(holds_on_images + saturated, CONFIG, SUBJECTS))
              if c["family"] == "weight_noise" and c["snn"] == "nengo-snn"]
    assert "multimodal/audio: -10.00" in claim["measured"] and "(both saturated: left out)" in claim["measured"]
    alone, = _claim(rc.verdicts(saturated, CONFIG, SUBJECTS), "weight_noise")
    assert alone["verdict"] == CANNOT
    one_fooled = _pair("weight_noise", range(N), range(100))  # the SNN keeps half: informative
    part, = _claim(rc.verdicts(one_fooled, CONFIG, SUBJECTS), "weight_noise")
    assert not part["saturated"] and part["verdict"] == HOLDS


def test_a_claim_combines_its_parts():
    holds_on_images = _pair("weight_noise", range(100), [])
    cannot_on_audio = _pair("weight_noise", range(5), range(5, 10), model="multimodal", modality="audio")
    table = rc.verdicts(holds_on_images + cannot_on_audio, CONFIG, SUBJECTS)
    parts = _claim(table, "weight_noise")
    assert {p["part_verdict"] for p in parts} == {HOLDS, CANNOT} and {p["verdict"] for p in parts} == {CANNOT}
    worse_on_audio = _pair("weight_noise", [], range(50), model="multimodal", modality="audio")
    parts = _claim(rc.verdicts(holds_on_images + worse_on_audio, CONFIG, SUBJECTS), "weight_noise")
    assert {p["verdict"] for p in parts} == {DOES_NOT_HOLD}
    claim, = [c for c in rc.claim_rows(table) if c["claim"] == parts[0]["claim"]]
    assert "conversion-mlp/image: +50.00 [" in claim["measured"] and "multimodal/audio" in claim["measured"]


def test_claims_that_did_not_run_say_why():
    table = rc.verdicts(_pair("weight_noise", range(100), []), CONFIG, SUBJECTS)
    dead, = _claim(table, "dead_neurons")
    assert dead["verdict"] == rc.NOT_RUN and dead["not_run"] == "dead_neurons was not in --perturbations"
    refused, = _claim(table, "weight_noise", snn="snntorch-snn")
    assert refused["verdict"] == rc.NOT_RUN
    assert refused["not_run"].startswith("refused: perturbation weight_noise applies to ort-dnn")
    config = replace(CONFIG, families=["ort-dnn", "snntorch-snn"])
    missing, = _claim(rc.verdicts([], config, SUBJECTS), "weight_noise")
    assert missing["not_run"] == "--families had no nengo-snn"
    assert not any(r["kind"] in rc.UNCLAIMED_KINDS for r in table)  # corruptions and Gaussian noise: compared only


def test_comparisons_name_the_engine_that_holds_up_better_per_family():
    rows = (_pair("weight_noise", range(100), []) + _pair("rotate", [], range(60))[2:]
            + _pair("stuck_at_zero", range(3), range(3, 6))[2:])
    found = {c["perturbation"]: c for c in rc.comparisons(rows)}
    assert found["weight_noise"]["holds_up_better"] == "nengo-snn"
    assert found["rotate"]["holds_up_better"] == "ort-dnn" and found["rotate"]["kind"] == "input"
    assert found["stuck_at_zero"]["holds_up_better"].startswith("neither")


def test_repeats_and_levels_are_averaged_per_sample():
    rows = _pair("weight_noise", range(100), [], level=0.1)
    rows += [_row("ort-dnn", "weight_noise", _wrong_on(range(20)), level=0.2, noise_seed=1),
             _row("nengo-snn", "weight_noise", _wrong_on(range(20)), level=0.2, noise_seed=1)]
    row, = _claim(rc.verdicts(rows, CONFIG, SUBJECTS), "weight_noise")
    assert row["levels"] == "0.1, 0.2" and row["repeats"] == 2
    assert row["difference_pp"] == pytest.approx(25)  # (50 + 0) / 2


def _attacks():
    """A registered attack crafted on the DNN and one of the same method and norm crafted on the SNN."""
    from snnbench import perturbations
    from snnbench.benchmarks import noise_sweep_perturbations as perturbed

    attacks = [n for n in perturbations.names() if perturbed.family(n).kind == rc.ATTACK]
    on_snn = next((n for n in attacks if perturbed.family(n).source != "dnn"), None)
    if on_snn is None:
        pytest.skip("no attack family crafted on the SNN is registered")
    return rc._white_box_counterpart(on_snn), on_snn


def test_attack_claims_are_read_per_budget_and_white_box_against_the_dnn_white_box():
    on_dnn, on_snn = _attacks()
    config = replace(CONFIG, perturbations=[on_dnn, on_snn])
    rows = (_pair(on_dnn, range(100), [], level=0.1) + _pair(on_dnn, range(100), range(100), level=0.2)[2:]
            + _pair(on_dnn, range(80), range(20), snn="snntorch-snn", model="multimodal", level=0.1)
            + [_row("snntorch-snn", on_snn, _wrong_on(range(10)), "multimodal", level=0.1)])
    table = rc.verdicts(rows, config, SUBJECTS)
    by_level = {r["level"]: r for r in _claim(table, on_dnn)}
    assert by_level[0.1]["verdict"] == HOLDS and by_level[0.1]["levels"] == "0.1"
    assert by_level[0.2]["verdict"] == DOES_NOT_HOLD  # each budget its own claim
    transferred, = [r for r in _claim(table, on_dnn, "snntorch-snn") if r["level"] == 0.1]
    assert transferred["difference_pp"] == pytest.approx(30) and transferred["verdict"] == HOLDS
    white_box = [r for r in _claim(table, on_snn, "snntorch-snn") if r["level"] == 0.1]
    assert len(white_box) == 1 and white_box[0]["dnn_family"] == on_dnn
    assert white_box[0]["drop_dnn_pp"] == pytest.approx(40) and white_box[0]["drop_snn_pp"] == pytest.approx(5)
    assert white_box[0]["verdict"] == HOLDS and white_box[0]["claim"] == (
        f"snntorch-snn under {on_snn} holds up better than its DNN under {on_dnn} at eps 0.1 (each white-box)")
    assert by_level[0.1]["claim"] == f"nengo-snn holds up better than its DNN under {on_dnn} at eps 0.1 (crafted on the DNN)"
    not_asked = _claim(rc.verdicts(_pair("weight_noise", [], []), CONFIG, SUBJECTS), on_snn, "snntorch-snn")
    assert all(r["verdict"] == rc.NOT_RUN and r["not_run"] == f"{on_snn} was not in --perturbations"
               for r in not_asked)
