"""``snnbench tune``: an Optuna study of the converted SNN's neuron parameters around the calibrated
setting (snnbench.tuning): a parent MLflow run, a nested run per trial scored on validation images
(the 20% hold-out of MNIST train), the calibrated setting first. The parent logs the best setting
(``best_params.json``, ``convert --params-json``'s format), the calibrated one, plots, and the test
accuracies (``snn_test_accuracy_calibrated`` / ``_tuned``; the test set read only after the choice).
"""

import argparse
from dataclasses import fields
from pathlib import Path

from snnbench import tuning
from snnbench.benchmarks.options import (add_calibration_arguments, add_common, add_recipe_arguments,
                                         add_simulation_arguments, auto, boolean, from_profile, option_params,
                                         positive, positive_or_none, require)
from snnbench.execution import add_cluster_arguments, executor_from_args
from snnbench.tuning import (PRUNERS, SAMPLERS, SECOND_OBJECTIVES, ConversionTask, SearchSpace, StudyOptions,
                             storage_label)
from snnbench.tuning.space import PARAMETERS

# full: the whole validation split (12,000 images), the least noisy score it allows
PROFILE_DEFAULTS = {"quick": {"n_trials": 20, "val_samples": 1000}, "full": {"n_trials": 100, "val_samples": 12000}}
SPACE_HELP = {"bias_offset": "added to the calibrated bias (activation units)",
              "synapse": "output synapse in seconds; each trial may also choose no filtering",
              "tau_rc": "LIF membrane time constant (s)", "tau_ref": "LIF refractory period (s)"}


def bounds(text: str):
    """'LOW,HIGH' -> (low, high); 'off' -> None (parameter not tuned)."""
    if text.strip().lower() == "off":
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH or off, got {text!r}") from None
    return (low, high)


def optional_path(text: str):
    return Path(text) if text.strip() else None


def add_arguments(parser: argparse.ArgumentParser, command: str):
    add_common(parser, device=False)
    add_cluster_arguments(parser)
    study = parser.add_argument_group("study")
    study.add_argument("--study-name", default="tune-conversion",
                       help="Optuna study name (same name + storage resumes it)")
    study.add_argument("--storage", default="sqlite:///optuna.db",
                       help="SQLAlchemy URL (sqlite:///optuna.db, postgresql+psycopg2://USER:PASS@HOST/DB) "
                            "or journal file (journal:PATH or PATH.journal)")
    study.add_argument("--n-trials", type=auto(positive(int)), default=None,
                       help="TOTAL finished (complete + pruned) trials the study should hold; a rerun finishes "
                            "the missing ones (auto: 20 quick, 100 full)")
    study.add_argument("--timeout", type=positive_or_none, default=None,
                       help="stop starting trials after this many seconds (none: no limit)")
    study.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="TPE (seeded with --seed) or random")
    study.add_argument("--sampler-seed", type=auto(int), default=None,
                       help="sampler seed (auto: --seed); trial workers add 1000 x their index; give "
                            "each machine of a distributed study its own seed")
    study.add_argument("--pruner", choices=PRUNERS, default="median",
                       help="median pruner on growing validation subsets, or none")
    study.add_argument("--second-objective", choices=SECOND_OBJECTIVES, default="none",
                       help="also minimise spikes or synaptic operations per image (a multi-objective study: "
                            "no pruning; the best setting is the most accurate on the Pareto front)")
    study.add_argument("--best-params-out", type=optional_path, default=None,
                       help="also write the best setting (convert --params-json format) to this file")
    study.add_argument("--skip-test", type=boolean, nargs="?", const=True, default=False,
                       help="do not score the calibrated and best settings on the MNIST test set after the study")

    task = parser.add_argument_group("fixed for the study")
    add_recipe_arguments(task, ("mlp", "cnn"), "conversion DNN (snnbench convert's)")
    add_calibration_arguments(task)
    task.add_argument("--steps", type=positive(int), default=8, help="simulation time steps per image")
    add_simulation_arguments(task, simulator=False)
    task.add_argument("--val-samples", type=auto(positive(int)), default=None,
                      help="validation images per trial: the first of MNIST train's 20%% validation split "
                           "(auto: 1000 quick, 12000 full)")
    task.add_argument("--val-steps", type=positive(int), default=4,
                      help="growing validation subsets reported to the pruner")

    space = parser.add_argument_group("search bounds per hidden layer, around the calibrated setting "
                                      "(LOW,HIGH, or off to keep the calibrated value)")
    default = SearchSpace()
    for name in PARAMETERS:
        value = getattr(default, name)
        what = SPACE_HELP.get(name, f"factor on the calibrated {name.replace('_', ' ')}")
        log = ", log scale" if name in SearchSpace.LOG else ""
        space.add_argument(f"--{name.replace('_', '-')}", type=bounds,
                           default=",".join(str(v) for v in value) if value else "off", help=f"{what}{log}")


def run(args):
    vars(args).update(from_profile(args, PROFILE_DEFAULTS))
    # the study's fixed settings: the options of ConversionTask's field names (no --simulator: its default)
    given = {f.name: getattr(args, f.name) for f in fields(ConversionTask) if hasattr(args, f.name)}
    task = ConversionTask(**{**given, "train_limit": args.train_limit or None,
                             "space": SearchSpace(**{n: getattr(args, n) for n in PARAMETERS})})
    options = StudyOptions(study_name=args.study_name, storage=args.storage, n_trials=args.n_trials,
                           timeout=args.timeout, sampler=args.sampler, pruner=args.pruner,
                           seed=args.seed if args.sampler_seed is None else args.sampler_seed,
                           workers=args.workers or 1)
    task.check()
    options.check()
    if args.best_params_out is not None:
        require(args.best_params_out.parent.is_dir(),
                f"--best-params-out {args.best_params_out}: folder {args.best_params_out.parent} does not exist")
    params = option_params(args, "cluster")
    params.update(storage=storage_label(args.storage),
                  best_params_out=str(args.best_params_out) if args.best_params_out else None)
    with executor_from_args(args) as executor:
        tuning.run_benchmark(task, options, best_params_out=args.best_params_out, score_test=not args.skip_test,
                             params=params, executor=executor)
