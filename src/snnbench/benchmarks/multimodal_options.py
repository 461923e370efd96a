"""Options shared by the multimodal suite's commands (``multimodal``, the six sweeps and
``multimodal_study``): training, seeds and the grid engine."""

import argparse
from dataclasses import dataclass

import torch

from snnbench.config import Take, auto, int_list, non_negative, option, positive
from snnbench.data import VALIDATIONS
from snnbench.device import resolve_device
from snnbench.errors import ConfigError
from snnbench.execution import Cluster
from snnbench.models.spiking import scan_kernel
from snnbench.training import recipes
from snnbench.training.grid import Engine
from snnbench.training.suite import TrainSettings, features

PROFILES = {p: dict(epochs=recipes.SUITE[p].epochs, train_limit=recipes.SUITE[p].train_limit,
                    test_limit=recipes.SUITE_TEST_LIMIT[p]) for p in recipes.PROFILES}


def seed_count_or_list(text: str):
    """'3' -> 3 (seeds --seed, --seed + 1, --seed + 2); '0,1,2' -> [0, 1, 2] (these seeds)."""
    if "," in text or "[" in text:
        seeds = int_list(text.strip("[]"))
        if not seeds or len(set(seeds)) != len(seeds):
            raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
        return seeds
    return positive(int)(text)


@dataclass(frozen=True)
class SuiteTraining:
    """How the suite's models train (snnbench.training.suite.TrainSettings), per profile where auto."""
    epochs: int | None = option(None, "training epochs (auto = 2 quick, 200 full)", auto(non_negative))
    train_limit: int | None = option(None, "training samples before the validation split (0 = all, auto = 2000 "
                                           "quick, all full)", auto(non_negative))
    test_limit: int | None = option(None, "a fixed random subset of N test samples (0 = all, auto = 1000 quick, all "
                                          "full)", auto(non_negative))
    # both profiles share the study's learning rate and batch size
    lr: float = option(recipes.SUITE["full"].lr, "Adam learning rate", positive(float))
    batch_size: int = option(recipes.SUITE["full"].batch_size, "training batch size", positive(int))


@dataclass(frozen=True)
class Seeds:
    """Each configuration's seeds and its validation samples."""
    seeds: int | list = option(1, "seeds per configuration: N (--seed, --seed + 1, ...) or a comma list of seeds "
                                  "(mean and 95%% interval over them)", seed_count_or_list)
    validation: str = option("recordings", "held-out validation samples: recordings (no validation recording is a "
                                           "training recording), speakers (held-out speakers), study (the reference "
                                           "study's protocol: a 20%% sample split whose recordings also occur in "
                                           "training)", choices=VALIDATIONS)


GRID_TRAINER = "grid trainer (snnbench.training.grid: how models train together; CUDA only)"


@dataclass(frozen=True)
class Devices:
    devices: str = option("", "GPUs to spread the trainings over, one local worker each: all, or e.g. cuda:0,cuda:1 "
                              "(empty: --device alone)", group=GRID_TRAINER)


# where the suite's trainings run: the cluster's options, the GPUs and the grid engine
ENGINE_OPTIONS = (Cluster, Devices, Take(Engine, group=GRID_TRAINER))


def devices_of(options) -> list[torch.device]:
    """``--devices`` (all, or a list), else ``--device``; each checked against ``--scan``."""
    if not options.devices:
        devices = [resolve_device(options.device)]
    elif options.devices == "all":
        if not torch.cuda.is_available():
            raise ConfigError("--devices all needs CUDA; use --device cpu or leave --devices empty")
        devices = [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    else:
        devices = [resolve_device(name.strip()) for name in options.devices.split(",") if name.strip()]
    for device in devices:
        scan_kernel(options.scan, device)
    return devices


def seeds_of(options) -> list[int]:
    """The seeds every configuration is trained with (what a run logs as ``seeds``)."""
    return options.seeds if isinstance(options.seeds, list) else [options.seed + i for i in range(options.seeds)]


def settings_by_seed(options, scale: dict) -> dict[int, TrainSettings]:
    """Each seed's training settings, of the options and the profile's ``scale``."""
    return {seed: TrainSettings(epochs=scale["epochs"], lr=options.lr, batch_size=options.batch_size, seed=seed,
                                train_limit=scale["train_limit"], validation=options.validation)
            for seed in seeds_of(options)}


def data_checksums(modalities) -> dict:
    """The checksums of the modalities' test data (what a run logs of its data)."""
    return {k: v for modality in modalities for k, v in features(modality, "test").checksums.items()}
