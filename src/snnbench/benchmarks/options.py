"""Command-line pieces shared by the benchmarks: parsed value types and common options."""

import argparse

from snnbench.data import MODALITIES
from snnbench.errors import ConfigError
from snnbench.training.recipes import CONVERSION, PROFILES, Recipe


def float_list(text: str) -> list[float]:
    """'0,0.1,0.5' -> [0.0, 0.1, 0.5]"""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def boolean(text) -> bool:
    """'true' / 'false' (also 1 / 0, yes / no)."""
    if isinstance(text, bool):
        return text
    if text.strip().lower() in ("1", "true", "yes"):
        return True
    if text.strip().lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def choice(choices):
    """One word from ``choices``."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return text
    return parse


def choice_list(choices):
    """A non-empty comma-separated list whose items come from ``choices``."""
    def parse(text: str) -> list[str]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items or not set(items) <= set(choices):
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items
    return parse


def auto(parse):
    """``parse(text)``, or None (the profile's value) for 'auto' or '' (what MLflow passes for an
    empty parameter)."""
    def parse_or_auto(text: str):
        if text.strip().lower() in ("auto", ""):
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a value or 'auto', got {text!r}") from None
    parse_or_auto.profile_dependent = True  # snnbench.cli.mlproject: not an entry-point parameter
    return parse_or_auto


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive(kind=float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def positive_or_none(text: str) -> float | None:
    """A number > 0, or None for none / 0 / ''."""
    return None if text.strip().lower() in ("none", "0", "") else positive(float)(text)


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


def add_common(parser: argparse.ArgumentParser, device: bool = True):
    parser.add_argument("--seed", type=int, default=0, help="random seed (training, splits, noise)")
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="quick: small data and few epochs (minutes on 2 CPU cores); full: the studies' settings")
    if device:
        parser.add_argument("--device", type=auto(str), default=None,
                            help="torch device: auto (CUDA if present, else the CPU), cpu, cuda[:N]")


def add_resume(parser: argparse.ArgumentParser, what: str):
    """``--resume`` (a bare flag or true / false): ``what`` it does for this command."""
    parser.add_argument("--resume", type=boolean, nargs="?", const=True, default=False, help=what)


def add_modalities(parser: argparse.ArgumentParser, what: str = "image (MNIST), audio (FSDD spectrograms), "
                                                                  "multimodal (both, concatenated)"):
    parser.add_argument("--modalities", type=choice_list(MODALITIES), default=list(MODALITIES), help=what)


def add_recipe_arguments(group, archs, arch_help: str = "the conversion study's network", lr: bool = True):
    """The conversion DNN and its training recipe (snnbench.training.recipes.CONVERSION's defaults)."""
    group.add_argument("--arch", choices=archs, default="mlp", help=arch_help)
    group.add_argument("--epochs", type=non_negative, default=CONVERSION.epochs,
                       help=f"training epochs of the DNN (reference: {CONVERSION.epochs})")
    if lr:
        group.add_argument("--lr", type=positive(float), default=CONVERSION.lr,
                           help=f"Adam learning rate (reference: {CONVERSION.lr:g})")
        group.add_argument("--batch-size", type=positive(int), default=CONVERSION.batch_size,
                           help="training batch size")
    group.add_argument("--train-limit", type=non_negative, default=CONVERSION.train_limit,
                       help="train the DNN on the first N MNIST training images only, 0 = all 60,000")


def recipe_from_args(args):
    """The conversion DNN's recipe of a command's options (add_recipe_arguments)."""
    return Recipe(args.epochs, getattr(args, "lr", CONVERSION.lr), getattr(args, "batch_size", CONVERSION.batch_size),
                  args.train_limit, args.seed)


def add_simulation_arguments(group, simulator: bool = True):
    """The Nengo simulation's options (snnbench.conversion.nengo_net.SimConfig's defaults);
    ``simulator``: also the choice of simulator."""
    from snnbench.conversion.nengo_net import READOUTS, SIMULATORS, SimConfig

    default = SimConfig()
    group.add_argument("--dt", type=positive(float), default=default.dt, help="simulation time step (s)")
    group.add_argument("--readout", choices=READOUTS, default=default.readout,
                       help="logits: mean over all steps, the last step, or the mean over the second half")
    group.add_argument("--minibatch", type=positive(int), default=default.minibatch, help="nengo-dl minibatch size")
    if simulator:
        group.add_argument("--simulator", choices=SIMULATORS, default=default.simulator,
                           help="nengo_dl (batched, TensorFlow) or nengo (the reference simulator, slow)")


def add_calibration_arguments(group):
    """The calibrated conversion's options (snnbench.conversion.calibration.Calibration's defaults)."""
    from snnbench.conversion.calibration import Calibration, percentile_value
    from snnbench.conversion.nengo_net import INITIAL_VOLTAGES, SPIKING_NEURONS

    default = Calibration()
    group.add_argument("--calibration-samples", type=positive(int), default=default.samples,
                       help="calibration: training images (a seeded subset; never validation or test images) whose "
                            "activations set the rate scales")
    group.add_argument("--percentile", type=percentile_value, default=default.percentile,
                       help="calibration: percentile of each layer's positive activations that fires --target-rate "
                            "spikes per step (max = the largest)")
    group.add_argument("--target-rate", type=positive(float), default=default.target_rate,
                       help="calibration: spikes per step at that percentile (at most about 1)")
    group.add_argument("--neuron", choices=SPIKING_NEURONS, default=default.neuron,
                       help="calibration: if (integrate-and-fire, signed membrane, reset by subtraction), "
                            "if-rectified (nengo's SpikingRectifiedLinear) or lif (linear rate mapping)")
    group.add_argument("--initial-voltage", choices=INITIAL_VOLTAGES, default=default.initial_voltage,
                       help="calibration: spiking neurons start at half the threshold, or nengo's uniform draw")
