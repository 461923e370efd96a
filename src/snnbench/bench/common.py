"""Command-line pieces shared by the benchmarks: parsed value types and common options."""

import argparse

from snnbench.errors import SnnbenchError

PROFILES = ("quick", "full")


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


def choice_list(choices):
    """A comma-separated list whose items must come from ``choices``."""
    def parse(text: str) -> list[str]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items
    return parse


def add_common(parser: argparse.ArgumentParser, profile: bool = True, device: bool = True):
    parser.add_argument("--seed", type=int, default=0, help="random seed (training, splits, noise)")
    if profile:
        parser.add_argument("--profile", choices=PROFILES, default="quick",
                            help="quick: small data and few epochs (minutes on 2 CPU cores); full: the studies' settings")
    if device:
        parser.add_argument("--device", type=auto(str), default=None,
                            help="torch device: auto (CUDA if present, else the CPU), cpu, cuda[:N]")


def auto(parse):
    """``parse(text)``, or None for 'auto' (or '', what MLflow passes for an empty parameter):
    the profile's value."""
    def parse_or_auto(text: str):
        if text.strip().lower() in ("auto", ""):
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a value or 'auto', got {text!r}") from None
    parse_or_auto.profile_dependent = True  # snnbench.mlproject: not an entry-point parameter
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


def require(condition: bool, message: str):
    if not condition:
        raise SnnbenchError(message)
