"""What the grid trains and how: jobs, their stacks (one per shape), shares of the stacks over workers."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from snnbench.config import boolean, choice, option, positive
from snnbench.models.multimodal import SIZES, ModelSpec
from snnbench.models.spiking import SCAN_KERNELS
from snnbench.training.cache import cache_folder, is_built
from snnbench.training.suite import TrainSettings, model_config
from snnbench.tracking.runs import config_key

STACKED_FIELDS = ("neuron", "beta", "reset")  # model fields that may differ inside one stack


@dataclass(frozen=True)
class Engine:
    """How a grid runs on its device (never what it computes)."""
    graphs: bool = option(True, "each training step a CUDA graph", boolean)
    scan: str = option("triton", "CUDA neuron scan kernels: triton (one kernel each way per layer) or eager (a few "
                                 "torch operations per step); the CPU always runs eager", choice(SCAN_KERNELS))
    tf32: bool = option(False, "float32 matrix products on TensorFloat-32 units (faster; inputs rounded to 10 "
                               "mantissa bits)", boolean)
    side_by_side: bool = option(True, "stacks of models run side by side on CUDA streams", boolean)
    max_stack: int = option(64, "most models trained in one stack", positive(int))


@dataclass(frozen=True)
class Job:
    """One training: a model and its training settings (seed included)."""
    spec: ModelSpec
    settings: TrainSettings

    @property
    def key(self) -> str:
        return config_key(model_config(self.spec, self.settings))

    @property
    def folder(self) -> Path:
        return cache_folder("multimodal", model_config(self.spec, self.settings))

    def trained(self) -> bool:
        return is_built(self.folder)


def stack_key(job: Job) -> str:
    """Jobs with the same key train in one stack (same shapes, same data sizes, same steps)."""
    model = {k: v for k, v in asdict(job.spec).items() if k not in STACKED_FIELDS}
    training = {k: v for k, v in asdict(job.settings).items() if k != "seed"}
    return config_key({"model": model, "training": training})


def stacks(jobs: list[Job], max_stack: int = 64) -> list[list[Job]]:
    """Jobs grouped by :func:`stack_key`, in order, at most ``max_stack`` per stack."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(stack_key(job), []).append(job)
    return [group[i:i + max_stack] for group in groups.values() for i in range(0, len(group), max_stack)]


def stack_shape(specs: list[ModelSpec]) -> str:
    """A stack's label: modality, family, its sizes (widest first), steps."""
    spec, sizes = specs[0], sorted({s.size for s in specs}, key=lambda size: -SIZES[size])
    return f"{spec.modality}/{spec.family}/{'+'.join(sizes)}" + (f"/T={spec.steps}" if spec.family == "snn" else "")


def stack_cost(group: list[Job]) -> float:
    """A rough relative cost of training a stack (for spreading stacks over devices)."""
    spec, settings = group[0].spec, group[0].settings
    steps = spec.steps if spec.family == "snn" else 1
    n = settings.train_limit or (2700 if spec.modality == "audio" else 60000)
    width = max(job.spec.hidden_width for job in group)
    return settings.epochs * n / settings.batch_size * steps * (1 + 0.1 * len(group)) * width ** 0.5


ADAM_BYTES_PER_PARAMETER = 28  # fp32: read weight, gradient, both moments; write weight and moments


def product_flops(spec: ModelSpec) -> int:
    """Floating-point operations (2 per multiply-add) of one training sample's matrix products,
    forward and backward: every layer's forward and weight gradient, every layer's input
    gradient but the first's; a direct input's current (SNN) is computed once for all steps."""
    sizes = spec.layer_sizes
    steps = spec.steps if spec.family == "snn" else 1
    first = 2 * 2 * sizes[0] * sizes[1]
    return first + steps * sum(3 * 2 * a * b for a, b in zip(sizes[1:-1], sizes[2:]))


def share_out(groups: list[list[Job]], n_devices: int) -> list[list[list[Job]]]:
    """Stacks shared out over devices: heaviest first, each to the least loaded device."""
    shares = [[] for _ in range(n_devices)]
    load = [0.0] * n_devices
    for group in sorted(groups, key=stack_cost, reverse=True):
        i = int(np.argmin(load))
        shares[i].append(group)
        load[i] += stack_cost(group)
    return shares
