"""``snnbench throughput``: inference speed of the conversion study's MLP (cached) as ``ort`` (the DNN
in ONNX Runtime), ``nengo_dl`` (the converted SNN), ``nengo`` (the same on nengo's slow reference
simulator, its own grid) and ``snntorch`` (the same weights, IF neurons, soft reset, membrane
readout), per time steps and batch size. Each point: a backend built once, ``--warmup`` untimed and
``--repeats`` timed batches of MNIST test images; logged: latency and samples per second (median,
quartiles, min / max) and the machine (CPU, threads, load).

Beside each point, the network's dense-arithmetic floor on the machine at that moment: ONNX
Runtime's forward rate on the same batch, timed in turn with the point's own repeats (so both see
the same load), divided by the passes the point needs (a simulation of T steps does at most T
forward passes' products; the DNN one): ``dense_floor_samples_per_s``, and ``floor_ratio`` =
samples per second / floor (1 = as fast as T dense passes; above 1, the simulation skips products).
"""

import csv
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch

from snnbench import engines
from snnbench.engines import ORT_DNN, NENGO_SNN, SNNTORCH_SNN
from snnbench.benchmarks.options import Common, from_profile, recipe, require
from snnbench.config import auto, choice_list, command_options, int_list, option, positive
from snnbench.conversion.calibration import mnist_training_images
from snnbench.data import load_features
from snnbench.device import resolve_device
from snnbench.engines.nengo import SimConfig
from snnbench.errors import SnnbenchError
from snnbench.execution import Cluster, executor_for
from snnbench.evaluation.harness import RESULT_COLUMNS, ResultKey, log_result_table, result_row
from snnbench.evaluation.metrics import accuracy_interval, correct
from snnbench.evaluation.plots import throughput_plot
from snnbench.evaluation.timing import BatchTiming, machine, set_threads, time_batch
from snnbench.tracking.runs import benchmark_run
from snnbench.training.cache import pack, unpack
from snnbench.training.conversion import trained_conversion_model
from snnbench.training.recipes import Recipe

ENGINES = {"ort": ORT_DNN, "nengo_dl": NENGO_SNN, "nengo": NENGO_SNN, "snntorch": SNNTORCH_SNN}  # by backend
BACKENDS = tuple(ENGINES)
# profile -> grid; the nengo reference simulator gets its own small grid (it is the slowest).
GRIDS = {
    "quick": dict(steps=[4, 16], batch_sizes=[1, 100], nengo_steps=[4], nengo_batch_sizes=[1, 10],
                  warmup=1, repeats=5, samples=200),
    "full": dict(steps=[4, 8, 16, 32], batch_sizes=[1, 10, 100, 1000], nengo_steps=[4, 8, 16, 32],
                 nengo_batch_sizes=[1, 10], warmup=2, repeats=20, samples=1000),
}


def _grid(key: str, parse, what: str):
    """An option of the timed grid, by default the profile's (GRIDS)."""
    return option(None, f"{what} (auto: {GRIDS['quick'][key]} quick, {GRIDS['full'][key]} full)", auto(parse))


@dataclass(frozen=True)
class ThroughputGrid:
    """throughput's own options (besides the common ones, the cluster's and the conversion recipe)."""
    backends: list = option(list(BACKENDS), "comma list of backends to time", choice_list(BACKENDS))
    steps: list | None = _grid("steps", int_list, "SNN time steps")
    batch_sizes: list | None = _grid("batch_sizes", int_list, "batch sizes")
    nengo_steps: list | None = _grid("nengo_steps", int_list, "time steps on the nengo reference simulator, which is "
                                                              "slow")
    nengo_batch_sizes: list | None = _grid("nengo_batch_sizes", int_list, "batch sizes on the nengo reference "
                                                                          "simulator; it runs one sample at a time")
    warmup: int | None = _grid("warmup", int, "untimed batches before timing")
    repeats: int | None = _grid("repeats", positive(int), "timed batches per point")
    threads: int | None = option(None, "CPU threads for every backend (auto: all usable CPUs)", auto(positive(int)))


Options = command_options("ThroughputOptions", Common, Cluster, ThroughputGrid, *recipe(("mlp", "cnn"), lr=False),
                          doc="throughput's settings")
OPTIONS = {"throughput": Options}


@dataclass(frozen=True)
class ThroughputSettings:
    """The timed grid and the model, every default resolved (:func:`resolve`): the run's params."""
    steps: list
    batch_sizes: list
    nengo_steps: list
    nengo_batch_sizes: list
    warmup: int
    repeats: int
    samples: int  # test images timed (at least the largest batch)
    backends: list
    threads: int
    arch: str
    epochs: int | None
    train_limit: int
    profile: str
    seed: int
    device: str


def resolve(options: Options) -> ThroughputSettings:
    """The run's settings: options given, else the profile's grid."""
    grid_of = from_profile(options, GRIDS)
    for key in ("steps", "batch_sizes", "nengo_steps", "nengo_batch_sizes"):
        require(grid_of[key] and all(v >= 1 for v in grid_of[key]), f"--{key.replace('_', '-')} needs "
                f"positive integers, got {grid_of[key]}")
    require(grid_of["warmup"] >= 0, f"--warmup must be >= 0, got {grid_of['warmup']}")
    largest = max(grid_of["batch_sizes"] + grid_of["nengo_batch_sizes"])
    require(largest <= 10000,
            f"batch size {largest} is larger than the MNIST test set (10000); use smaller --batch-sizes")
    return ThroughputSettings(**{**grid_of, "samples": max(grid_of["samples"], largest)}, backends=options.backends,
                              threads=options.threads or len(os.sched_getaffinity(0)), arch=options.arch,
                              epochs=options.epochs, train_limit=options.train_limit or 0, profile=options.profile,
                              seed=options.seed, device=str(resolve_device(options.device)))


def grid(settings: ThroughputSettings) -> list:
    """(backend, steps, batch size) points; the DNN has no time steps (steps 0)."""
    points = []
    for backend in settings.backends:
        slow = backend == "nengo"
        steps = [0] if backend == "ort" else settings.nengo_steps if slow else settings.steps
        sizes = settings.nengo_batch_sizes if slow else settings.batch_sizes
        points += [(backend, t, b) for t in steps for b in sizes]
    return points


def run(options: Options):
    settings = resolve(options)
    device = resolve_device(settings.device)  # where snntorch runs; ORT and Nengo use the CPU
    folder = trained_conversion_model(settings.arch, Recipe(epochs=settings.epochs, seed=settings.seed,
                                                               train_limit=settings.train_limit))
    test = load_features("image", "test")
    points = grid(settings)
    units = [BackendPoints(backend, tuple(p for p in points if p[0] == backend), settings, pack(folder))
             for backend in settings.backends]
    with executor_for(options) as executor, \
            benchmark_run("throughput", asdict(settings), device=str(device), data_checksums=test.checksums) as run_:
        rows, failed, hosts = [], {}, {}
        for _, result in executor.map(time_backend, units):
            rows += result["rows"]
            hosts[result["backend"]] = result["machine"]
            if result["failed"]:
                failed[result["backend"]] = result["failed"]
                print(f"  {result['backend']}: FAILED ({result['failed']}); its other points are skipped", flush=True)
        host = {}  # the machine the points ran on, with every backend's thread counts (each's in machine.json)
        for backend in settings.backends:
            host.update({k: v for k, v in hosts.get(backend, {}).items() if k not in host})
        mlflow.set_tags({f"machine.{k}": v for k, v in host.items()})
        mlflow.log_dict(hosts if len({json.dumps(h, sort_keys=True) for h in hosts.values()}) > 1 else host,
                        "machine.json")
        mlflow.log_metric("load_avg_1min_end", os.getloadavg()[0])
        if failed:
            mlflow.set_tag("failed_backends", json.dumps(failed))
        rows.sort(key=lambda r: points.index((r["backend"], r["steps"], r["batch_size"])))
        if rows:
            log_results(rows, settings)
        print(f"throughput: {len(rows)} points logged to run {run_.info.run_id}")
    if failed:
        others = ",".join(b for b in settings.backends if b not in failed)
        raise SnnbenchError(f"backends failed: {'; '.join(f'{b} ({e})' for b, e in failed.items())}; the others "
                            f"were logged; rerun with --backends {others} or fix the failing one")
    return rows


@dataclass(frozen=True)
class BackendPoints:
    """A unit of work: every timed point of one backend, with the trained network's files."""
    backend: str
    points: tuple
    settings: ThroughputSettings
    model: dict  # snnbench.training.cache.pack of the network's folder


def time_backend(unit: BackendPoints) -> dict:
    """Time the unit's points on the machine it runs on; a broken backend ends its unit with the
    reason (the other backends' timings are kept)."""
    settings = unit.settings
    threads_in_force = set_threads(settings.threads, tensorflow=unit.backend == "nengo_dl")
    folder = unpack(unit.model)
    test = load_features("image", "test")
    images, labels = test.x[: settings.samples], test.y[: settings.samples]
    host = {**machine(), **threads_in_force}
    device = resolve_device(settings.device)
    if device.type == "cuda":
        host["gpu"] = torch.cuda.get_device_name(device)
    rows, failed, layers = [], None, None
    for backend, steps, batch_size in unit.points:
        try:
            if layers is None and backend != "ort":  # the default conversion (convert --method calibrated)
                layers = engines.converted_layers(folder, calibration_inputs=mnist_training_images(settings.seed),
                                          seed=settings.seed)[1]
            row = measure(backend, steps, batch_size, images, labels, folder, settings, layers)
        except Exception as exc:  # one broken backend must not lose the others' timings
            failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            break
        rows.append(row)
        print(f"  {backend:<9} steps={steps:<3} batch={batch_size:<5} {row['samples_per_s_median']:10.1f} samples/s  "
              f"{row['latency_ms_median']:9.2f} ms/batch  dense floor {row['dense_floor_samples_per_s']:10.1f} "
              f"samples/s  ratio {row['floor_ratio']:.2f}", flush=True)
    return {"backend": unit.backend, "rows": rows, "failed": failed, "machine": host}


def build_backend(backend, steps, batch_size, folder, settings, layers=None):
    """The backend's engine (snnbench.engines; the spiking ones with the per-layer ``layers``)."""
    if backend == "ort":
        options = dict(batch_size=batch_size, threads=settings.threads, activity=False)
    elif backend == "snntorch":
        options = dict(device=settings.device, seed=settings.seed, steps=steps, layers=layers)
    else:
        options = dict(sim=SimConfig(steps=steps, minibatch=batch_size, simulator=backend, seed=settings.seed),
                       counters=False, layers=layers)
    return engines.build(ENGINES[backend], folder, options)


def measure(backend, steps, batch_size, images, labels, folder, settings, layers=None) -> dict:
    """Time one (backend, steps, batch size) point, in turn with ONNX Runtime on the same batch (the
    dense floor), then score what was timed on every sample. The engine is built once, Nengo's
    simulators by running one batch."""
    started = time.perf_counter()
    model = build_backend(backend, steps, batch_size, folder, settings, layers)

    def predict(x):
        return model.predict(x.reshape(len(x), -1))
    if backend in ("nengo_dl", "nengo"):
        predict(np.zeros((batch_size, model.converted.n_inputs), np.float32))  # builds the simulator
    setup = time.perf_counter() - started
    predicts = [predict]
    if backend != "ort":
        dense = build_backend("ort", 0, batch_size, folder, settings)
        predicts.append(lambda x: dense.predict(x.reshape(len(x), -1)))
    timings = time_in_turn(predicts, images[:batch_size], settings.warmup, settings.repeats)
    timing, floor = timings[0], timings[-1]  # the DNN is its own floor
    scores = [np.asarray(predict(images[a: a + batch_size])) for a in range(0, len(images), batch_size)]
    accuracy = accuracy_interval(int(correct(np.concatenate(scores), labels).sum()), len(labels))
    summary = timing.summary()
    dense_floor = floor.summary()["samples_per_s_median"] / max(steps, 1)  # T steps: at most T dense passes
    return {"backend": backend, "steps": steps, "batch_size": batch_size, **summary,
            "dense_floor_samples_per_s": dense_floor, "floor_ratio": summary["samples_per_s_median"] / dense_floor,
            "setup_s": setup, "threads": settings.threads, **accuracy}


def time_in_turn(predicts: list, batch: np.ndarray, warmup: int, repeats: int) -> list:
    """Each ``predicts[i](batch)`` timed ``repeats`` times, taking turns (after ``warmup`` untimed
    rounds), so that a change of load on the machine reaches all alike; a BatchTiming each."""
    for predict in predicts * warmup:
        predict(batch)
    rounds = [[time_batch(predict, batch, 0, 1).seconds[0] for predict in predicts] for _ in range(repeats)]
    return [BatchTiming(len(batch), list(seconds)) for seconds in zip(*rounds)]


def log_results(rows: list, settings: ThroughputSettings):
    """The table (JSON, CSV, and as the result table with timings as extra columns), plot and best speeds."""
    columns = list(rows[0])
    mlflow.log_table({c: [r[c] for r in rows] for c in columns}, "throughput.json")
    log_result_table([result_row(ResultKey("throughput", ENGINES[r["backend"]], f"conversion-{settings.arch}", "image",
                                           "" if r["backend"] == "ort" else "calibrated", max(r["steps"], 1),
                                           seed=settings.seed),
                                 r, **{c: v for c, v in r.items() if c not in RESULT_COLUMNS}) for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "throughput.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        mlflow.log_artifact(str(path))
        mlflow.log_artifact(str(throughput_plot(rows, Path(tmp) / "throughput.png", BACKENDS)))
    for backend in {r["backend"] for r in rows}:
        best = max((r for r in rows if r["backend"] == backend), key=lambda r: r["samples_per_s_median"])
        mlflow.log_metrics({f"{backend}_best_samples_per_s": best["samples_per_s_median"],
                            f"{backend}_floor_ratio_at_best": best["floor_ratio"]})
