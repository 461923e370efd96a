"""The options several benchmarks share, and the checks and profile resolution of every command
(options are dataclass fields: :mod:`snnbench.config`)."""

import argparse
from dataclasses import dataclass

from snnbench.config import add_options, auto, boolean, choice_list, option
from snnbench.data import MODALITIES
from snnbench.errors import ConfigError
from snnbench.training.recipes import PROFILES, Recipe


def require(condition: bool, message: str):
    if not condition:
        raise ConfigError(message)


def option_params(args, *leave_out) -> dict:
    """A command's options as its run's params, without the internal ones and ``leave_out``."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", *leave_out)}


def from_profile(args, table: dict) -> dict:
    """The profile-dependent settings of a command: each setting of ``table[args.profile]`` from its
    option where one was given (not auto), else the profile's value. The one resolver of profiles."""
    return {k: v if getattr(args, k, None) is None else getattr(args, k) for k, v in table[args.profile].items()}


@dataclass(frozen=True)
class Common:
    """The options of every benchmark."""
    seed: int = option(0, "random seed (training, splits, noise)", int)
    profile: str = option("quick", "quick: small data and few epochs (minutes on 2 CPU cores); full: the studies' "
                                   "settings", choices=PROFILES)
    device: str | None = option(None, "torch device: auto (CUDA if present, else the CPU), cpu, cuda[:N]", auto(str))


def add_common(parser: argparse.ArgumentParser, device: bool = True):
    add_options(parser, Common, skip=() if device else ("device",))


def add_resume(parser: argparse.ArgumentParser, what: str):
    """``--resume`` (a bare flag or true / false): ``what`` it does for this command."""
    parser.add_argument("--resume", type=boolean, nargs="?", const=True, default=False, help=what)


def add_modalities(parser: argparse.ArgumentParser, what: str = "image (MNIST), audio (FSDD spectrograms), "
                                                                  "multimodal (both, concatenated)"):
    parser.add_argument("--modalities", type=choice_list(MODALITIES), default=list(MODALITIES), help=what)


def add_recipe_arguments(group, archs, arch_help: str = "the conversion study's network", lr: bool = True):
    """The conversion DNN and its training recipe (snnbench.training.recipes.Recipe)."""
    group.add_argument("--arch", choices=archs, default="mlp", help=arch_help)
    add_options(group, Recipe, skip=() if lr else ("lr", "batch_size"))
