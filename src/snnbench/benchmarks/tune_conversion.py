"""``snnbench tune``: an Optuna study of the converted SNN's neuron parameters around the calibrated
setting (snnbench.tuning): a parent MLflow run, a nested run per trial scored on validation samples
(``--dataset``'s validation split: MNIST's is the seeded 20% hold-out of its training images), the
calibrated setting first (calibrated on the training split). The model is the conversion DNN that
tune trains on MNIST, or ``--onnx-model`` (trained on ``--dataset``). The parent logs the best
setting (``best_params.json``, ``convert --params-json``'s format), the calibrated one, plots, and
the test accuracies (``snn_test_accuracy_calibrated`` / ``_tuned``; the test split read only after
the choice).
"""

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from snnbench import tuning
from snnbench.benchmarks.options import add_common, add_recipe_arguments, from_profile, option_params, require
from snnbench.config import add_options, boolean, from_args, option
from snnbench.conversion.calibration import Calibration
from snnbench.conversion.nengo_net import SimConfig
from snnbench.conversion.onnx_prepare import ModelInput
from snnbench.execution import add_cluster_arguments, executor_from_args
from snnbench.tuning import ConversionTask, SearchSpace, StudyOptions, storage_label
from snnbench.tuning.task import STUDY, TASK

# full: the whole validation split (MNIST's 12,000 images), the least noisy score it allows; auto never asks for
# more than the split holds
PROFILE_DEFAULTS = {"quick": {"n_trials": 20, "val_samples": 1000}, "full": {"n_trials": 100, "val_samples": 12000}}


def optional_path(text: str):
    return Path(text) if text.strip() else None


def add_arguments(parser, command: str):
    add_common(parser, device=False)
    add_cluster_arguments(parser)
    add_options(parser, StudyOptions, n_trials=None, seed=None)  # auto: the profile's; --seed
    add_options(parser, ConversionTask, ["second_objective"])
    add_options(parser, TuneOptions)
    task = parser.group(TASK)
    add_recipe_arguments(task, ("mlp", "cnn"), "conversion DNN (snnbench convert's)")
    add_options(task, Calibration)
    add_options(task, SimConfig, skip=("simulator",), steps=8)  # nengo-dl only
    add_options(parser, ConversionTask, ("val_samples", "val_steps"), val_samples=None)  # auto: the profile's
    add_options(parser, ConversionTask, ("dataset", "onnx_model"))
    add_options(parser, ModelInput)
    add_options(parser, SearchSpace)


@dataclass(frozen=True)
class TuneOptions:
    """tune's own options (besides the study's, the task's and the search space's)."""
    best_params_out: Path | None = option(None, "also write the best setting (convert --params-json format) to this "
                                                "file", optional_path, group=STUDY)
    skip_test: bool = option(False, "do not score the calibrated and best settings on the test split after the "
                                    "study", boolean, nargs="?", const=True, group=STUDY)


def run(args):
    auto_val_samples = args.val_samples is None
    vars(args).update(from_profile(args, PROFILE_DEFAULTS))
    # the study's fixed settings: the options of ConversionTask's field names (no --simulator: its default)
    given = {f.name: getattr(args, f.name) for f in fields(ConversionTask) if hasattr(args, f.name)}
    model_input = from_args(ModelInput, args)
    require(bool(args.onnx_model) or model_input == ModelInput(),
            "--output and --input-scale / --input-mean / --input-std describe the file given with --onnx-model")
    task = ConversionTask(**{**given, "train_limit": args.train_limit or None, "space": from_args(SearchSpace, args),
                             "model_input": asdict(model_input) if args.onnx_model else {}})
    options = from_args(StudyOptions, args, seed=args.seed if args.sampler_seed is None else args.sampler_seed,
                        workers=args.workers or 1)
    task.check()
    options.check()
    if auto_val_samples:  # the profile's count, or the whole validation split when it holds fewer
        available = len(tuning.task_dataset(task.dataset, task.seed).validation)
        task = replace(task, val_samples=min(task.val_samples, available) or task.val_samples)
        args.val_samples = task.val_samples
        task.check()
    tuning.validation_set(task)  # too few validation samples: one line, before anything is written
    if args.best_params_out is not None:
        require(args.best_params_out.parent.is_dir(),
                f"--best-params-out {args.best_params_out}: folder {args.best_params_out.parent} does not exist")
    params = option_params(args, "cluster")
    params.update(storage=storage_label(args.storage),
                  best_params_out=str(args.best_params_out) if args.best_params_out else None)
    with executor_from_args(args) as executor:
        tuning.run_benchmark(task, options, best_params_out=args.best_params_out, score_test=not args.skip_test,
                             params=params, executor=executor)
