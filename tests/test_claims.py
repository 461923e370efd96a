"""The study's claims: verdicts from intervals against stated ranges, on rows of known accuracy."""

import pytest

from snnbench.benchmarks import claims


def _row(modality, family, seed, clean, val=None, size="S", reset="soft", neuron="lif", steps=4, **noisy):
    tests = {"clean": clean, "pre/0.1": clean, "post/0.1": clean, "pre/5": clean, "post/5": clean, **noisy}
    return {"modality": modality, "family": family, "size": size, "neuron": neuron, "reset": reset, "steps": steps,
            "seed": seed, "best_val_accuracy": clean if val is None else val,
            **{f"test/{k.replace('_', '/')}": {"accuracy": v} for k, v in tests.items()}}


def test_part_verdicts_compare_the_interval_with_the_range():
    assert claims.part_verdict(1.0, 1.5, 0, 2) == "holds"
    assert claims.part_verdict(2.5, 3.0, 0, 2) == "does not hold"
    assert claims.part_verdict(1.5, 2.5, 0, 2) == "cannot be told apart"
    assert claims.part_verdict(float("nan"), float("nan"), 0, 2) == "cannot be told apart"


def test_reset_claim_under_both_protocols():
    rows = []
    for seed, jitter in enumerate((0.0, 0.002, -0.002)):
        rows += [_row("image", "snn", seed, 0.97 + jitter), _row("image", "snn", seed, 0.95 + jitter, reset="hard"),
                 _row("audio", "snn", seed, 0.90 + jitter), _row("audio", "snn", seed, 0.70 + jitter, reset="hard"),
                 _row("multimodal", "snn", seed, 0.992 + jitter),
                 # the validation accuracy (study protocol) says soft and hard are equal
                 _row("multimodal", "snn", seed, 0.990 + jitter, val=0.992 - jitter, reset="hard")]
    ours = next(c for c in claims.check(rows, "ours") if c["claim"] == 11)
    assert ours["verdict"] == "holds", ours["parts"]
    study = next(c for c in claims.check(rows, "study") if c["claim"] == 11)
    soft_minus_hard = study["parts"][-1]
    assert soft_minus_hard["mean"] == pytest.approx(0.0) and study["verdict"] == "cannot be told apart"
    assert {p["part"] for p in ours["parts"]} >= {"audio SNN soft - hard", "multimodal SNN hard"}


def test_an_interval_is_clipped_to_the_values_its_quantity_can_take():
    """Multimodal SNNs at 99.9-100% by seed: the t-interval of the mean crosses 100 and the spread's crosses 0,
    values an accuracy and a spread cannot take; clipped to them, claim 3 (about 99.9%, within 0.1 point) holds."""
    rows = [_row("multimodal", "snn", seed, accuracy, size=size)
            for seed, accuracy in enumerate((0.999, 1.0, 1.0, 0.9995)) for size in ("S", "S/2", "S/3")]
    claim = next(c for c in claims.check(rows, "ours") if c["claim"] == 3)
    accuracy, spread = claim["parts"][0], claim["parts"][-1]
    assert accuracy["ci_high"] == 100.0 and accuracy["ci_low"] == pytest.approx(99.85, abs=0.05)
    assert spread["mean"] == spread["ci_low"] == spread["ci_high"] == 0.0
    assert claim["verdict"] == "holds", claim["parts"]
    # a difference can take any sign: not clipped
    rows = [_row("image", "snn", seed, 0.97 + d, neuron=n) for seed, d in enumerate((0.0, 0.01, -0.01))
            for n in ("lif", "if")] + [_row("image", "snn", 3, 0.98, neuron="lif"), _row("image", "snn", 3, 0.96, neuron="if")]
    lif_minus_if = next(c for c in claims.check(rows, "ours") if c["claim"] == 12)["parts"][0]
    assert lif_minus_if["ci_low"] < 0 < lif_minus_if["ci_high"]


def test_every_claim_gets_a_verdict_even_without_its_runs():
    checked = claims.check([_row("image", "dnn", 0, 0.98)], "ours")
    assert [c["claim"] for c in checked] == list(range(1, 14))
    assert all(c["verdict"] in claims.VERDICTS for c in checked)


def _grid(seeds, clean=0.97, **kwargs) -> list:
    """Rows of image SNNs (LIF and IF, so claim 12 has a part) for each seed, clean accuracy ``clean`` + seed/1000."""
    return [_row("image", "snn", seed, clean + seed / 1000, neuron=neuron, **kwargs)
            for seed in seeds for neuron in ("lif", "if")]


def test_seeds_of_two_runs_are_pooled_each_once_from_the_first_run():
    newest, older = _grid((3, 4, 2)), _grid((0, 1, 2), clean=0.5)  # seed 2 trained by both runs
    rows, repeats = claims.pooled([newest, older])
    assert repeats == 2  # seed 2's LIF and IF rows of the older run
    assert sorted({r["seed"] for r in rows}) == [0, 1, 2, 3, 4] and len(rows) == 10
    assert all(r["best_val_accuracy"] == 0.972 for r in rows if r["seed"] == 2)  # the newest run's seed 2
    lif_minus_if = next(c for c in claims.check(rows, "ours") if c["claim"] == 12)
    assert lif_minus_if["seeds"] == 5 and lif_minus_if["parts"][0]["seeds"] == 5
    # a configuration's seed is one model: the same seed of another configuration is not a repeat
    rows, repeats = claims.pooled([_grid((0,)), _grid((0,), reset="hard")])
    assert repeats == 0 and len(rows) == 4


def test_a_part_counts_the_seeds_that_measure_it():
    rows = _grid((0, 1, 2, 3)) + [_row("audio", "snn", s, 0.9, neuron=n) for s in (0, 1) for n in ("lif", "if")]
    claim = next(c for c in claims.check(rows, "ours") if c["claim"] == 12)
    seeds = {p["part"]: p["seeds"] for p in claim["parts"]}
    assert claim["seeds"] == 4
    assert seeds == {"image SNN LIF - IF": 4, "audio SNN LIF - IF": 2, "multimodal SNN LIF - IF": 0}


def _log_study_run(params: dict, rows: list) -> str:
    import mlflow

    from snnbench.benchmarks.multimodal_grid import STUDY_DOCUMENT
    from snnbench.tracking.runs import benchmark_run

    with benchmark_run("multimodal_study", params) as run:
        mlflow.log_dict({"meta": {}, "runs": rows, "summary": []}, STUDY_DOCUMENT)
    return run.info.run_id


def test_the_claims_section_pools_the_runs_of_the_same_settings(tracking_store, tmp_path):
    """Two runs of the same settings as the newest (seeds 0-2, then 2-4 on another device) pool to five seeds,
    seed 2 once; an older run of other settings (epochs) is not pooled, nor is a run of the other protocol."""
    from snnbench.reporting.claims_section import claims_lines
    from snnbench.reporting.context import Context
    from snnbench.tracking.runstore import RunStore

    settings = {"profile": "full", "validation": "recordings", "epochs": 200}
    _log_study_run({**settings, "epochs": 1, "seeds": "[5]"}, _grid((5,), clean=0.5))
    pooled = {_log_study_run({**settings, "seeds": "[0, 1, 2]", "devices": "[\"cuda:0\"]"}, _grid((0, 1, 2))),
              _log_study_run({**settings, "seeds": "[2, 3, 4]", "devices": "[\"cpu\"]"}, _grid((2, 3, 4)))}
    study = _log_study_run({**settings, "validation": "study", "seeds": "[0]"}, _grid((0,)))
    ctx = Context(RunStore([tracking_store]), tmp_path / "figures", "figures")
    lines = claims_lines(ctx)
    row = next(line for line in lines if line.startswith("| 12 | 12 |")).split(" | ")
    assert row[2].endswith("(seeds: 1 study, 5 ours)")
    # LIF = IF in every seed: a zero difference over five seeds; the part without runs says so
    assert row[5].startswith("image SNN LIF - IF: 0.00 [0.00, 0.00] (claimed -0.2 .. 0.2); audio SNN LIF - IF: "
                             "not measured")
    assert "Seeds trained again by a later run of the same settings (ours): 2 rows counted once" in "\n".join(lines)
    assert {r.id for r in ctx.used} == pooled | {study}
