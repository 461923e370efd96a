"""The multimodal family's one trainer: many models trained at once, each as if alone.

A :class:`Job` (a ModelSpec and its TrainSettings) yields a model cache folder; :func:`train_jobs`
trains the jobs whose folders are missing, :func:`trained_multimodal_model` one job, a stack of one.
Jobs of one shape (differing in seed, neuron model or reset) are **stacked**: weights ``(models,
in, out)``, batched products, one Adam. Adam and the neuron are elementwise and the loss is a sum
of per-model losses, so each model keeps what training it alone gives it (its seeded weights,
batch order, validation split, input spikes and best-validation weights; tests/test_grid.py
checks it against ``fit``). On CUDA (:class:`Engine`) training steps run as CUDA graphs, neuron
scans as Triton kernels and stacks side by side on streams. Stacks are checkpointed and resume;
several GPUs or machines train shares of them as units of work (snnbench.execution).
:func:`evaluate_jobs` scores trained models under evaluation noise, stacked too.
"""

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from snnbench.execution import Executor
from snnbench.training.cache import cache_identity, pack, unpack
from snnbench.models.multimodal import ModelSpec
from snnbench.training.suite import TrainSettings
from snnbench.training.grid.evaluation import evaluate_jobs
from snnbench.training.grid.plan import Engine, Job, product_flops, share_out, stack_cost, stack_shape, stacks
from snnbench.training.grid.stacked import StackedNet, split_k
from snnbench.training.grid.trainer import STEP_PARTS, StackTrainer, run_stacks

__all__ = ["Engine", "Job", "StackShare", "StackTrainer", "StackedNet", "evaluate_jobs", "product_flops",
           "run_stacks", "share_out", "split_k", "stack_cost", "stacks", "STEP_PARTS", "time_step_parts", "train_jobs",
           "train_share", "trained_multimodal_model", "warm_up"]


def trained_multimodal_model(spec: ModelSpec, settings: TrainSettings, device: torch.device | str = "cpu") -> Path:
    """The cache folder of this model trained with these settings: trained on first use, as a
    stack of one (an interrupted training resumes from its checkpoint on the next call)."""
    job = Job(spec, settings)
    train_jobs([job], [torch.device(device)], log=lambda message: None)
    return job.folder


def train_jobs(jobs: list[Job], devices: list[torch.device] | None = None, engine: Engine = Engine(),
               time_limit: float = 0.0, log=print, executor=None) -> dict:
    """Train every job whose model is not cached yet. With ``time_limit`` (seconds, 0 = none) the
    stacks stop at the first epoch end past it, checkpointed: calling again resumes them.
    With a cluster ``executor`` (snnbench.execution) its workers train shares of the stacks.
    Returns a summary: wall seconds, devices, stacks, throughput per stack shape, and
    ``complete`` (every job trained)."""
    devices = devices or [torch.device("cpu")]
    started = time.perf_counter()
    deadline = started + time_limit if time_limit else None
    todo = [j for j in dict.fromkeys(jobs) if not j.trained()]
    groups = stacks(todo, engine.max_stack)
    summary = {"devices": [str(d) for d in devices], "jobs": len(jobs), "trained_now": len(todo),
               "stacks": [{"shape": stack_shape([j.spec for j in g]), "models": len(g)} for g in groups]}
    if groups and executor is not None and executor.client is not None:
        summary["speeds"] = _train_on_cluster(groups, devices, engine, time_limit, executor, log)
    elif len(devices) > 1 and groups:  # one local worker per GPU
        with Executor.local(len(devices), [d.index for d in devices]) as local:
            summary["speeds"] = _train_on_cluster(groups, devices, engine, time_limit, local, log)
    elif groups:
        with _tf32(engine.tf32):
            summary["speeds"] = run_stacks([StackTrainer(g, devices[0], engine) for g in groups],
                                           engine.side_by_side, deadline, log)
    summary["wall_seconds"] = time.perf_counter() - started
    summary["complete"] = all(j.trained() for j in jobs)
    return summary


@contextlib.contextmanager
def _tf32(allowed: bool):
    """TF32 matrix products (CUDA) allowed or not, as before afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def time_step_parts(jobs: list[Job], device: torch.device, engine: Engine = Engine(),
                    replays: int = 20) -> tuple[dict, int]:
    """Milliseconds per grid step (every stack of ``jobs`` one training step) of each of
    :data:`STEP_PARTS` (trained or not, nothing is saved), and the most steps an epoch of a stack
    takes: on CUDA, ``replays`` replays of each stack's captured ``STEPS_PER_GRAPH`` steps, the
    stacks side by side on their streams as :func:`run_stacks` runs them; on the CPU, one stack after another."""
    with _tf32(engine.tf32):
        trainers = [StackTrainer(g, device, engine) for g in stacks(list(dict.fromkeys(jobs)), engine.max_stack)]
        for trainer in trainers:
            trainer.ready()
        times = {}
        for part in STEP_PARTS:
            runs = []
            for trainer in trainers:
                with trainer._on_stream():
                    runs.append(trainer.part_steps(part))
                    runs[-1]()  # warm
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            for _ in range(replays):
                for trainer, run in zip(trainers, runs):
                    with trainer._on_stream():
                        run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[part] = (time.perf_counter() - started) * 1000 / (replays * trainers[0].probe_steps)
    return times, max(t.steps_per_epoch for t in trainers)


@dataclass(frozen=True)
class StackShare:
    """A unit of work (snnbench.execution): the stacks one worker trains side by side on its device
    (``cuda``: the worker's own GPU)."""
    jobs: tuple
    device: str
    engine: Engine
    time_limit: float
    cache: str = ""  # the driver's model cache (snnbench.training.cache.cache_identity)


def train_share(share: StackShare) -> dict:
    """Train a share on the worker; its speeds and every model it finished, packed so that they
    reach the driver's cache from any machine (none when the worker writes to that cache itself)."""
    summary = train_jobs(list(share.jobs), [torch.device(share.device)], share.engine, share.time_limit)
    shared = share.cache == cache_identity()
    return {"speeds": summary.get("speeds", {}),
            "models": [] if shared else [pack(j.folder) for j in share.jobs if j.trained()]}


def warm_up():
    """Done once per process before training (the driver's and each cluster worker's), so that
    neither importing the grid's code (done, with this module) nor making the CUDA context is timed."""
    if torch.cuda.is_available():
        torch.empty(1, device="cuda")


def _train_on_cluster(groups, devices, engine: Engine, time_limit: float, executor, log) -> dict:
    """Stacks shared out over the executor's workers, one unit each; the models come back into this
    machine's cache."""
    gpu = devices[0].type == "cuda"
    shares = [s for s in share_out(groups, executor.workers(gpu=gpu)) if s]
    units = [StackShare(tuple(j for group in share for j in group), "cuda" if gpu else "cpu", engine, time_limit,
                        cache_identity()) for share in shares]
    log(f"grid: {sum(len(u.jobs) for u in units)} trainings in {len(units)} shares on {executor}")
    speeds = {}
    for _, result in executor.map(train_share, units, gpu=gpu):
        for packed in result["models"]:
            unpack(packed)
        for shape, entries in result["speeds"].items():
            speeds.setdefault(shape, []).extend(entries)
    return speeds
