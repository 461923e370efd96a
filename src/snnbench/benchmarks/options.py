"""The options several benchmarks share, and the checks and profile resolution of every command
(options are dataclass fields: :mod:`snnbench.config`)."""

from dataclasses import asdict, dataclass

from snnbench.config import Take, auto, boolean, choice_list, option
from snnbench.data import MODALITIES
from snnbench.errors import ConfigError
from snnbench.training.recipes import PROFILES, Recipe


def require(condition: bool, message: str):
    if not condition:
        raise ConfigError(message)


def option_params(options, *leave_out) -> dict:
    """A command's options as its run's params, without ``leave_out``."""
    return {k: v for k, v in asdict(options).items() if k not in leave_out}


def from_profile(options, table: dict) -> dict:
    """The profile-dependent settings of a command: each setting of ``table[options.profile]`` from its
    option where one was given (not auto), else the profile's value. The one resolver of profiles."""
    return {k: v if getattr(options, k, None) is None else getattr(options, k)
            for k, v in table[options.profile].items()}


@dataclass(frozen=True)
class Common:
    """The options of every benchmark."""
    seed: int = option(0, "random seed (training, splits, noise)", int)
    profile: str = option("quick", "quick: small data and few epochs (minutes on 2 CPU cores); full: the studies' "
                                   "settings", choices=PROFILES)
    device: str | None = option(None, "torch device: auto (CUDA if present, else the CPU), cpu, cuda[:N]", auto(str))


COMMON_NO_DEVICE = Take(Common, skip=("device",))


@dataclass(frozen=True)
class Resume:
    """``--resume`` (a bare flag or true / false); each command says what it does (:func:`resume`)."""
    resume: bool = option(False, "", boolean, nargs="?", const=True)


def resume(what: str) -> Take:
    return Take(Resume, metadata={"resume": {"help": what}})


@dataclass(frozen=True)
class Modalities:
    modalities: list = option(list(MODALITIES), "image (MNIST), audio (FSDD spectrograms), multimodal (both, "
                                                "concatenated)", choice_list(MODALITIES))


def modalities(what: str = "") -> Take:
    return Take(Modalities, metadata={"modalities": {"help": what}} if what else {})


@dataclass(frozen=True)
class Architecture:
    arch: str = option("mlp", "the conversion study's network")


def recipe(archs, arch_help: str = "the conversion study's network", lr: bool = True, group: str = "") -> tuple:
    """The conversion DNN and its training recipe (snnbench.training.recipes.Recipe)."""
    return (Take(Architecture, group=group, metadata={"arch": {"choices": archs, "help": arch_help}}),
            Take(Recipe, group=group, skip=() if lr else ("lr", "batch_size")))
