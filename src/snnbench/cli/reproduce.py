"""``snnbench reproduce``: run every benchmark in one profile, each as its own ``snnbench``
process (``python -m snnbench.cli.main COMMAND --profile P --seed S``), then write the report.

A benchmark that fails does not stop the others; the report is still written from whatever
finished, and the command exits with an error naming the failed benchmarks. Trained models are
cached and sweeps resume, so running ``reproduce`` again mostly redoes what is missing.
"""

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

from snnbench.benchmarks.options import PROFILES, require
from snnbench.config import choice_list, command_options, option
from snnbench.errors import SnnbenchError
from snnbench.tracking.runs import tracking_uri

# The benchmarks, in the order they run: name -> (command, its own options). The conversion
# study is run by each method: the reference's, convert's default (auto: corrected where it
# applies), calibrated, and the tuned setting of the study `tune` has just run (tune's default study
# name and storage); then the convolutional networks and the MLP on the Loihi emulator; then the
# noise sweep, the robustness sweep over every perturbation family and throughput. The multimodal study's grid belongs on a GPU (`multimodal_study`).
BENCHMARKS = {
    "convert_reference": ("convert", ["--method", "reference", "--steps", "32", "--steps-list", "4,8,16,32"]),
    "convert": ("convert", ["--steps-list", "4,8,16,32"]),
    "convert_calibrated": ("convert", ["--method", "calibrated", "--steps-list", "4,8,16,32"]),
    "tune": ("tune", ["--steps", "4"]),
    "convert_tuned": ("convert", ["--method", "tuned", "--study-name", "tune-conversion", "--steps", "4",
                                  "--steps-list", "4,8,16,32"]),
    "convert_cnn": ("convert", ["--arch", "cnn", "--steps", "32", "--steps-list", "4,8,16,32"]),
    "convert_resnet": ("convert", ["--arch", "resnet", "--lr", "0.002", "--steps", "32",
                                   "--steps-list", "4,8,16,32"]),
    "convert_loihi": ("convert", ["--target", "nengo-loihi", "--steps", "8", "--steps-list", "8"]),
    "noise_sweep": ("noise_sweep", []),
    "robustness": ("robustness", []),
    "throughput": ("throughput", []),
    "multimodal_study": ("multimodal_study", ["--seeds", "3"]),
}


def benchmark_list(text: str) -> list:
    """Benchmark names from a comma list; 'all' = every one, 'none' or '' = none."""
    if text.strip().lower() == "all":
        return list(BENCHMARKS)
    if text.strip().lower() in ("none", ""):
        return []
    return choice_list(tuple(BENCHMARKS))(text)


@dataclass(frozen=True)
class ReproduceOwnOptions:
    profile: str = option("quick", "profile every benchmark runs with", choices=PROFILES)
    seed: int = option(0, "seed passed to every benchmark", int)
    device: str = option("", "torch device passed to the benchmarks that take one (default: their own default)")
    only: list = option(list(BENCHMARKS), f"comma list of benchmarks to run, or all ({', '.join(BENCHMARKS)})",
                        benchmark_list)
    skip: list = option([], "comma list of benchmarks to leave out, or none", benchmark_list)
    name: str = option("", "report name (default: the profile)")
    dry_run: bool = option(False, "print the commands without running them", action="store_true")
    extra_stores: str = option("", "comma list of further tracking stores the report also reads (e.g. runs made on "
                                   "a GPU machine)")


Options = command_options("ReproduceOptions", ReproduceOwnOptions, doc="reproduce's settings")
OPTIONS = {"reproduce": Options}


def commands(options: Options) -> list:
    """(benchmark name, snnbench argv) for each benchmark chosen, in order."""
    from snnbench.cli.main import build_parser

    chosen = [b for b in BENCHMARKS if b in options.only and b not in options.skip]
    require(chosen, "nothing to run: --only and --skip leave no benchmark")
    planned = []
    for name in chosen:
        command, own = BENCHMARKS[name]
        takes_device = build_parser(command).takes("--device")
        device = ["--device", options.device] if options.device and takes_device else []
        planned.append((name, [command, *own, "--profile", options.profile, "--seed", str(options.seed), *device]))
    return planned


def run(options: Options):
    from snnbench.cli.main import main

    report = ["report", "--name", options.name or options.profile]
    extra = [u.strip() for u in options.extra_stores.split(",") if u.strip()]
    if extra:
        report += ["--tracking-uri", ",".join([tracking_uri(), *extra])]
    planned = commands(options)
    for _, argv in planned + [("report", report)]:
        print("snnbench " + shlex.join(argv), flush=True)
    if options.dry_run:
        return
    failed = []
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}  # under `mlflow run`: a run each
    for name, argv in planned:
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "snnbench.cli.main", *argv], env=env)
        print(f"reproduce: {name} {'finished' if code == 0 else f'FAILED (exit {code})'} "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    code = main(report)
    if failed or code:
        raise SnnbenchError(f"benchmarks failed: {', '.join(failed) or 'none'}; report exit code {code}. "
                            "Fix and run the same command again (cached models are reused)")
