"""The in-process executor's overlap: the next unit runs in a worker thread while the caller handles the
last result, results in order, a unit's error raised to the caller."""

import threading
import time

import pytest

from snnbench.execution import Executor


def test_the_next_unit_runs_while_the_caller_handles_a_result_and_results_stay_in_order():
    started, threads = [], set()

    def double(unit):
        started.append(unit)
        threads.add(threading.current_thread().name)
        return 2 * unit

    results = Executor().map(double, [1, 2, 3], overlap=True)
    assert next(results) == (0, 2)
    deadline = time.monotonic() + 10
    while len(started) < 2 and time.monotonic() < deadline:  # unit 2 runs while result 1 is handled here
        time.sleep(0.01)
    assert started == [1, 2]
    assert list(results) == [(1, 4), (2, 6)]
    assert threading.current_thread().name not in threads


def test_a_units_error_reaches_the_caller():
    def fail_on_two(unit):
        if unit == 2:
            raise ValueError("unit 2 failed")
        return unit

    results = Executor().map(fail_on_two, [1, 2, 3], overlap=True)
    assert next(results) == (0, 1)
    with pytest.raises(ValueError, match="unit 2 failed"):
        next(results)
