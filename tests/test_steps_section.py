"""The report's "by time steps" section, from convert-shaped runs in a real MLflow store (their
result tables are written by the harness's own logger; the numbers are test inputs, not results)."""

import json
import time

import pytest

from snnbench.evaluation.harness import ResultKey, log_result_table, result_row
from snnbench.reporting.context import Context, with_interval
from snnbench.reporting.steps_section import STEPS, choose_run, loss_cell, steps_lines
from snnbench.tracking.runs import benchmark_run
from snnbench.tracking.runstore import RunStore


def _convert_run(arch: str, method: str, steps: list, paired: bool, seed: int = 0, rates: str | None = None,
                 **extra) -> str:
    params = {"profile": "full", "arch": arch, "method": method, "steps_list": json.dumps(steps), "seed": seed, **extra}
    if rates:
        params.update(rates=rates, scales="channel")
    rows = [result_row(ResultKey("convert", "ort-dnn", steps=0),
                       {"accuracy": 0.93, "accuracy_ci_low": 0.925, "accuracy_ci_high": 0.935})]
    for s in steps:
        accuracy = 0.93 - 0.1 / s
        measured = {"accuracy": accuracy, "accuracy_ci_low": accuracy - 0.005, "accuracy_ci_high": accuracy + 0.005}
        if s == 8 or paired:
            measured["spikes_per_neuron_per_step"] = 0.05 * s
        row = result_row(ResultKey("convert", "nengo-snn", steps=s), measured)
        if paired:
            row = row.with_extras(paired_loss=0.1 / s, paired_loss_ci_low=0.1 / s - 0.002,
                                  paired_loss_ci_high=0.1 / s + 0.002)
        rows.append(row)
    with benchmark_run("convert", params) as run:
        log_result_table(rows)
    time.sleep(0.01)  # distinct start times: "newest" is well defined
    return run.info.run_id


def _cells(text: str, start: str) -> list:
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_steps_section_shows_each_networks_curve_with_paired_losses(tracking_store, tmp_path):
    full = _convert_run("mlp", "corrected", list(STEPS), paired=True)
    short = _convert_run("mlp", "corrected", [4, 8], paired=True, seed=1)  # newer, fewer step counts
    old = _convert_run("cnn", "calibrated", [1, 2, 4, 8, 16, 32], paired=False)
    balanced = _convert_run("mlp", "corrected", [4], paired=True, rates="balanced")
    store = RunStore([tracking_store])
    assert choose_run(store, "mlp", "corrected").id == full != short
    assert choose_run(store, "resnet", "corrected") is None
    assert choose_run(store, "mlp", "corrected", "balanced").id == balanced  # runs without --rates: uniform
    ctx = Context(store, tmp_path / "figures", "figures")
    text = "\n".join(steps_lines(ctx))

    table = store.latest("convert", where=lambda r: r.id == full).table("results.json").to_dict("records")
    dnn = next(r for r in table if r["engine"] == "ort-dnn")
    snn = {r["steps"]: r for r in table if r["engine"] == "nengo-snn"}
    accuracy = _cells(text, "| MLP (784-256-10) | corrected (layer scales, uniform rates) | 93.00%")
    assert accuracy[2] == with_interval(dnn) and accuracy[-1] == f"`{full[:8]}`"
    assert accuracy[3:-1] == [with_interval(snn[s]) for s in STEPS]
    loss = _cells(text, "| MLP (784-256-10) | corrected (layer scales, uniform rates) | 10.00")
    assert loss[2] == "10.00 [9.80, 10.20]" and loss[4] == "2.50 [2.30, 2.70]"  # 4 steps: 0.025 +- 0.002
    assert loss[2:-1] == [loss_cell(snn[s], dnn) for s in STEPS]
    spikes = text.split("Spikes per neuron per step")[1]
    assert _cells(spikes, "| MLP (784-256-10) | corrected (layer scales, uniform rates) |")[2:-1] == ["0.05", "0.1", "0.2", "0.4", "0.8", "1.6"]
    assert _cells(spikes, "| CNN | calibrated (layer scales, uniform rates) |")[2:-1] == ["–", "–", "–", "0.4", "–", "–"]  # measured at 8 only
    cnn = _cells(text, "| CNN | calibrated (layer scales, uniform rates) | 10.00")  # no paired columns logged: the plain gap
    assert cnn[2] == "10.00" and cnn[-1] == f"`{old[:8]}`"
    assert "ResNet-style" not in text.split("Test accuracy")[1]
    assert _cells(text, "| MLP (784-256-10) | corrected (channel scales, balanced rates) |")[2:-1] == \
        ["93.00% [92.50, 93.50]", "–", "–", with_interval({"accuracy": 0.905, "accuracy_ci_low": 0.9,
                                                            "accuracy_ci_high": 0.91}), "–", "–", "–"]
    assert {r.id for r in ctx.used} == {full, old, balanced}
    assert (tmp_path / "figures" / "conversion_by_steps.png").stat().st_size > 1000
    assert "(figures/conversion_by_steps.png)" in text and full in text


def test_steps_section_without_runs_says_what_to_run(tracking_store, tmp_path):
    with benchmark_run("demo", {"profile": "full"}):
        pass
    text = "\n".join(steps_lines(Context(RunStore([tracking_store]), tmp_path, "x")))
    assert "_No runs yet: run `snnbench convert --profile full --arch mlp --method corrected" in text


@pytest.mark.parametrize("row, expected", [
    ({"accuracy": 0.90, "paired_loss_ci_low": 0.01, "paired_loss_ci_high": 0.03}, "2.00 [1.00, 3.00]"),
    ({"accuracy": 0.90, "paired_loss_ci_low": float("nan"), "paired_loss_ci_high": float("nan")}, "2.00"),
    ({"accuracy": 0.93}, "-1.00")])
def test_loss_cell_is_dnn_minus_snn_with_the_paired_interval_when_logged(row, expected):
    assert loss_cell(row, {"accuracy": 0.92}) == expected


def test_a_users_onnx_network_on_the_whole_test_set_gets_its_own_rows(tracking_store, tmp_path):
    ours = _convert_run("mlp", "corrected", [4, 8], paired=True, rates="validated")
    theirs = _convert_run("mlp", "corrected", [4, 8, 32], paired=True, rates="validated",
                          onnx_model="/home/someone/models/vgg.onnx", test_limit=0)
    _convert_run("mlp", "corrected", [4, 8, 32], paired=True, rates="validated", seed=1,
                 onnx_model="/home/someone/models/resnet8.onnx", test_limit=2000)  # part of the test set: left out
    store = RunStore([tracking_store])
    assert choose_run(store, "mlp", "corrected", "validated").id == ours  # the project's MLP, not the user's file
    assert choose_run(store, "vgg", "corrected", "validated").id == theirs
    _convert_run("mlp", "corrected", [4, 8, 32], paired=True, rates="balanced",
                 onnx_model="/home/someone/models/vgg.onnx", test_limit=500)
    assert choose_run(store, "vgg", "corrected", "balanced") is None  # part of the test set only
    text = "\n".join(steps_lines(Context(store, tmp_path / "figures", "figures")))
    row = _cells(text, "| `vgg` (user's ONNX) | corrected (channel scales, validated rates) | 93.00%")
    assert row[-1] == f"`{theirs[:8]}`" and row[3:5] == ["–", "–"]  # no 1- or 2-step points
    assert "resnet8" not in text and "/home/someone" not in text  # no machine path in the report
