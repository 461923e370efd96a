"""Options shared by the multimodal suite's commands (``multimodal``, the six sweeps and
``multimodal_study``): training, seeds and the grid engine."""

import argparse

import torch

from snnbench.benchmarks.options import auto, boolean, choice, int_list, non_negative, positive
from snnbench.data import VALIDATIONS
from snnbench.device import resolve_device
from snnbench.errors import ConfigError
from snnbench.execution import add_cluster_arguments
from snnbench.models.spiking import SCAN_KERNELS, scan_kernel
from snnbench.training import recipes
from snnbench.training.grid import Engine
from snnbench.training.suite import TrainSettings, features

PROFILES = {p: dict(epochs=recipes.SUITE[p].epochs, train_limit=recipes.SUITE[p].train_limit,
                    test_limit=recipes.SUITE_TEST_LIMIT[p]) for p in recipes.PROFILES}
ENGINE_OPTIONS = {  # Engine field -> its option's type and help (the default is Engine's)
    "graphs": (boolean, "each training step a CUDA graph"),
    "scan": (choice(SCAN_KERNELS), "CUDA neuron scan kernels: triton (one kernel each way per layer) or eager (a few "
                                   "torch operations per step); the CPU always runs eager"),
    "tf32": (boolean, "float32 matrix products on TensorFloat-32 units (faster; inputs rounded to 10 mantissa bits)"),
    "side_by_side": (boolean, "stacks of models run side by side on CUDA streams"),
    "max_stack": (positive(int), "most models trained in one stack"),
}


def add_training_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--epochs", type=auto(non_negative), default=None,
                        help="training epochs (auto = 2 quick, 200 full)")
    parser.add_argument("--train-limit", type=auto(non_negative), default=None,
                        help="training samples before the validation split (0 = all, auto = 2000 quick, all full)")
    parser.add_argument("--test-limit", type=auto(non_negative), default=None,
                        help="a fixed random subset of N test samples (0 = all, auto = 1000 quick, all full)")
    recipe = recipes.SUITE["full"]  # both profiles share the study's learning rate and batch size
    parser.add_argument("--lr", type=positive(float), default=recipe.lr, help="Adam learning rate")
    parser.add_argument("--batch-size", type=positive(int), default=recipe.batch_size, help="training batch size")


def add_seed_arguments(parser: argparse.ArgumentParser, seeds: int):
    parser.add_argument("--seeds", type=seed_count_or_list, default=seeds,
                        help="seeds per configuration: N (--seed, --seed + 1, ...) or a comma list of seeds "
                             "(mean and 95%% interval over them)")
    parser.add_argument("--validation", choices=VALIDATIONS, default="recordings",
                        help="held-out validation samples: recordings (no validation recording is a training "
                             "recording), speakers (held-out speakers), study (the reference study's protocol: "
                             "a 20%% sample split whose recordings also occur in training)")


def add_engine_arguments(parser: argparse.ArgumentParser):
    add_cluster_arguments(parser)
    engine = parser.add_argument_group("grid trainer (snnbench.training.grid: how models train together; CUDA only)")
    default = Engine()
    engine.add_argument("--devices", default="",
                        help="GPUs to spread the trainings over, one local worker each: all, or e.g. cuda:0,cuda:1 "
                             "(empty: --device alone)")
    for field, (parse, text) in ENGINE_OPTIONS.items():
        engine.add_argument("--" + field.replace("_", "-"), type=parse, default=getattr(default, field), help=text)


def engine_from_args(args) -> Engine:
    return Engine(**{field: getattr(args, field) for field in ENGINE_OPTIONS})


def devices_from_args(args) -> list[torch.device]:
    """``--devices`` (all, or a list), else ``--device``; each checked against ``--scan``."""
    if not args.devices:
        devices = [resolve_device(args.device)]
    elif args.devices == "all":
        if not torch.cuda.is_available():
            raise ConfigError("--devices all needs CUDA; use --device cpu or leave --devices empty")
        devices = [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    else:
        devices = [resolve_device(name.strip()) for name in args.devices.split(",") if name.strip()]
    for device in devices:
        scan_kernel(args.scan, device)
    return devices


def seed_count_or_list(text: str):
    """'3' -> 3 (seeds --seed, --seed + 1, --seed + 2); '0,1,2' -> [0, 1, 2] (these seeds)."""
    if "," in text or "[" in text:
        seeds = int_list(text.strip("[]"))
        if not seeds or len(set(seeds)) != len(seeds):
            raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
        return seeds
    return positive(int)(text)


def seeds_from_args(args) -> list[int]:
    """The seeds every configuration is trained with (what a run logs as ``seeds``)."""
    return args.seeds if isinstance(args.seeds, list) else [args.seed + i for i in range(args.seeds)]


def settings_by_seed(args, scale: dict) -> dict[int, TrainSettings]:
    """Each seed's training settings, of the options and the profile's ``scale``."""
    return {seed: TrainSettings(epochs=scale["epochs"], lr=args.lr, batch_size=args.batch_size, seed=seed,
                                train_limit=scale["train_limit"], validation=args.validation)
            for seed in seeds_from_args(args)}


def data_checksums(modalities) -> dict:
    """The checksums of the modalities' test data (what a run logs of its data)."""
    return {k: v for modality in modalities for k, v in features(modality, "test").checksums.items()}
