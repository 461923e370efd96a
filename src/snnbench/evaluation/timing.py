"""Timing one batch of inference: warm-up calls, timed repeats, median and spread."""

import os
import platform
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class BatchTiming:
    batch_size: int
    seconds: list  # wall time of each timed repeat

    def summary(self) -> dict:
        """Latency per batch (ms) and samples per second: median, quartiles, min and max."""
        s = np.asarray(self.seconds)
        q25, q50, q75 = np.percentile(s, [25, 50, 75])
        per_s = self.batch_size / s
        return {"latency_ms_median": 1e3 * q50, "latency_ms_q25": 1e3 * q25, "latency_ms_q75": 1e3 * q75,
                "latency_ms_min": 1e3 * s.min(), "latency_ms_max": 1e3 * s.max(),
                "samples_per_s_median": self.batch_size / q50,
                "samples_per_s_q25": self.batch_size / q75, "samples_per_s_q75": self.batch_size / q25,
                "samples_per_s_min": float(per_s.min()), "samples_per_s_max": float(per_s.max()),
                "repeats": len(s)}


def time_batch(predict: Callable[[np.ndarray], object], batch: np.ndarray, warmup: int, repeats: int) -> BatchTiming:
    """Call ``predict(batch)`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for _ in range(warmup):
        predict(batch)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(batch)
        seconds.append(time.perf_counter() - started)
    return BatchTiming(len(batch), seconds)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the timings ran on: CPU model, logical CPUs visible and usable, load at the start."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpu_usable": usable,
            "load_avg_1min": round(load, 2), "platform": platform.platform()}


def set_threads(threads: int, tensorflow: bool = False) -> dict:
    """Use ``threads`` CPU threads in torch and, with ``tensorflow`` (nengo-dl), in TensorFlow (before it
    starts its runtime); the thread counts in force (0 = library default)."""
    import torch

    torch.set_num_threads(threads)
    counts = {"torch_threads": torch.get_num_threads()}
    if tensorflow:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already running in this process (e.g. a test session)
            print(f"throughput: TensorFlow already started; nengo-dl keeps "
                  f"{tf.config.threading.get_intra_op_parallelism_threads() or 'its default'} threads", flush=True)
        counts["tensorflow_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return counts
