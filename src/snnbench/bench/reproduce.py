"""``snnbench reproduce``: run every benchmark in one profile, each as its own ``snnbench``
process (``python -m snnbench.cli COMMAND --profile P --seed S``), then write the report.

A benchmark that fails does not stop the others; the report is still written from whatever
finished, and the command exits with an error naming the failed benchmarks. Trained models are
cached and sweeps resume, so running ``reproduce`` again mostly redoes what is missing.
"""

import os
import shlex
import subprocess
import sys
import time

from snnbench.bench.common import PROFILES, choice_list, require
from snnbench.errors import SnnbenchError

# The benchmarks, in the order they run (cheap ones first).
BENCHMARKS = ("convert", "tune", "noise_sweep", "multimodal", "size_sweep", "noise_level", "noise_position",
              "reset_sweep", "neuron_sweep", "timestep_sweep", "throughput")


def add_arguments(parser, command):
    parser.add_argument("--profile", choices=PROFILES, default="quick", help="profile every benchmark runs with")
    parser.add_argument("--seed", type=int, default=0, help="seed passed to every benchmark")
    parser.add_argument("--device", default=None, help="torch device passed to every benchmark (default: theirs)")
    parser.add_argument("--only", type=choice_list(BENCHMARKS), default=list(BENCHMARKS),
                        help="comma list of benchmarks to run (default: all)")
    parser.add_argument("--skip", type=choice_list(BENCHMARKS), default=[], help="comma list of benchmarks to leave out")
    parser.add_argument("--name", default=None, help="report name (default: PROFILE)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")


def commands(args) -> list:
    chosen = [b for b in BENCHMARKS if b in args.only and b not in args.skip]
    require(chosen, "nothing to run: --only and --skip leave no benchmark")
    device = ["--device", args.device] if args.device else []
    return [[name, "--profile", args.profile, "--seed", str(args.seed), *device] for name in chosen]


def _environment() -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_RUN_ID", None)  # under `mlflow run`, each benchmark opens its own run
    return env


def run(args):
    from snnbench.cli import main

    name = args.name or args.profile
    report = ["report", "--name", name]
    planned = commands(args)
    for argv in planned + [report]:
        print("snnbench " + shlex.join(argv), flush=True)
    if args.dry_run:
        return
    failed = []
    for argv in planned:
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "snnbench.cli", *argv], env=_environment())
        print(f"reproduce: {argv[0]} {'finished' if code == 0 else f'FAILED (exit {code})'} "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(argv[0])
    code = main(report)
    if failed or code:
        raise SnnbenchError(f"benchmarks failed: {', '.join(failed) or 'none'}; report exit code {code}. "
                            "Fix and run the same command again (finished work is reused)")
