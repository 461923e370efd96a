"""`snnbench throughput`: a tiny real run logs its table, machine and plot; bad grids fail early."""


import mlflow
import pytest

from conftest import require_data
from snnbench.cli.main import main
from snnbench.tracking.runstore import RunStore
from snnbench.benchmarks.throughput import time_in_turn
from snnbench.evaluation.timing import BatchTiming, time_batch

TINY = ["--epochs", "1", "--train-limit", "2000", "--steps", "2,4", "--batch-sizes", "1,8", "--warmup", "1",
        "--repeats", "3", "--threads", "1"]


def test_batch_timing_summary_is_consistent():
    timing = BatchTiming(batch_size=10, seconds=[0.1, 0.2, 0.4, 0.3])
    s = timing.summary()
    assert s["latency_ms_min"] == pytest.approx(100) and s["latency_ms_max"] == pytest.approx(400)
    assert s["latency_ms_q25"] <= s["latency_ms_median"] <= s["latency_ms_q75"]
    assert s["samples_per_s_median"] == pytest.approx(10 / (s["latency_ms_median"] / 1e3))
    assert s["samples_per_s_q25"] <= s["samples_per_s_median"] <= s["samples_per_s_q75"]
    calls = []
    measured = time_batch(calls.append, [1, 2, 3], warmup=2, repeats=5)
    assert len(calls) == 7 and len(measured.seconds) == 5 and measured.batch_size == 3


def test_backends_timed_in_turn_take_alternate_calls():
    calls = []
    first, second = time_in_turn([lambda x: calls.append("a"), lambda x: calls.append("b")], [1, 2], warmup=1,
                                 repeats=3)
    assert calls == ["a", "b"] * 4
    assert len(first.seconds) == len(second.seconds) == 3 and first.batch_size == second.batch_size == 2


@pytest.mark.slow
def test_tiny_throughput_run_logs_its_table(tracking_store):
    require_data()
    assert main(["throughput", *TINY, "--backends", "ort,nengo_dl,nengo,snntorch", "--nengo-steps", "2",
                 "--nengo-batch-sizes", "1,2"]) == 0
    run = RunStore([tracking_store]).latest("throughput")
    assert run is not None
    table = run.table("throughput.json")
    expected = {("ort", 0, 1), ("ort", 0, 8)} | {(b, t, n) for b in ("nengo_dl", "snntorch") for t in (2, 4)
                                                 for n in (1, 8)} | {("nengo", 2, 1), ("nengo", 2, 2)}
    assert set(zip(table["backend"], table["steps"], table["batch_size"])) == expected
    for row in table.to_dict("records"):
        assert row["repeats"] == 3 and row["threads"] == 1
        assert 0 < row["latency_ms_min"] <= row["latency_ms_median"] <= row["latency_ms_max"]
        assert row["samples_per_s_median"] == pytest.approx(row["batch_size"] / (row["latency_ms_median"] / 1e3))
        # the dense floor: ORT's rate on the same batch, timed in turn, over the passes the point needs
        assert row["floor_ratio"] == pytest.approx(row["samples_per_s_median"] / row["dense_floor_samples_per_s"])
        if row["backend"] == "ort":
            assert row["floor_ratio"] == 1.0
        assert row["dense_floor_samples_per_s"] > 0
    # what was timed was also scored: every spiking backend (the calibrated conversion) is close to the DNN
    ort_accuracy = table[table.backend == "ort"].accuracy.max()
    assert ort_accuracy > 0.5
    for row in table[table.backend != "ort"].to_dict("records"):
        assert row["n"] == 200 and row["accuracy"] > ort_accuracy - 0.1, row
    results = run.table("results.json")  # the fixed schema, one row per timed point
    assert len(results) == len(table) and set(results.engine) == {"ort-dnn", "nengo-snn", "snntorch-snn"}
    assert (results.accuracy_ci_low <= results.accuracy).all() and (results.accuracy <= results.accuracy_ci_high).all()
    csv = run.table("throughput.csv")
    assert len(csv) == len(table)
    artifacts = {a.path for a in run.client.list_artifacts(run.id)}
    assert {"throughput.json", "throughput.csv", "throughput.png", "machine.json"} <= artifacts
    assert run.tags["machine.cpu_model"] and int(run.tags["machine.cpu_usable"]) >= 1
    assert run.tags["machine.torch_threads"] == "1" and "machine.tensorflow_threads" in run.tags
    assert run.params["profile"] == "quick" and run.params["seed"] == "0"
    assert run.metrics["ort_best_samples_per_s"] == pytest.approx(max(table[table.backend == "ort"].samples_per_s_median))
    best = table[table.backend == "nengo_dl"].sort_values("samples_per_s_median").iloc[-1]
    assert run.metrics["nengo_dl_floor_ratio_at_best"] == pytest.approx(best.floor_ratio)


def test_bad_grid_fails_before_any_run(tracking_store, capsys):
    assert main(["throughput", *TINY, "--batch-sizes", "1,20000", "--backends", "ort"]) == 2
    assert "larger than the MNIST test set" in capsys.readouterr().err
    assert main(["throughput", *TINY, "--steps", "0", "--backends", "ort"]) == 2
    assert mlflow.search_runs(search_all_experiments=True).empty
