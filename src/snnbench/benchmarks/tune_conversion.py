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
from snnbench.benchmarks.options import COMMON_NO_DEVICE, from_profile, option_params, recipe, require
from snnbench.config import Take, boolean, command_options, from_args, option
from snnbench.conversion.calibration import Calibration
from snnbench.conversion.nengo_net import SimConfig
from snnbench.conversion.onnx_prepare import ModelInput
from snnbench.execution import Cluster, executor_for
from snnbench.tuning import ConversionTask, SearchSpace, StudyOptions, storage_label
from snnbench.tuning.task import STUDY, TASK

# full: the whole validation split (MNIST's 12,000 images), the least noisy score it allows; auto never asks for
# more than the split holds
PROFILE_DEFAULTS = {"quick": {"n_trials": 20, "val_samples": 1000}, "full": {"n_trials": 100, "val_samples": 12000}}


def optional_path(text: str):
    return Path(text) if text.strip() else None


@dataclass(frozen=True)
class TuneOwnOptions:
    """tune's own options (besides the study's, the task's and the search space's)."""
    best_params_out: Path | None = option(None, "also write the best setting (convert --params-json format) to this "
                                                "file", optional_path, group=STUDY)
    skip_test: bool = option(False, "do not score the calibrated and best settings on the test split after the "
                                    "study", boolean, nargs="?", const=True, group=STUDY)


Options = command_options(
    "TuneOptions", COMMON_NO_DEVICE, Cluster, Take(StudyOptions, defaults={"n_trials": None, "seed": None}),  # auto
    Take(ConversionTask, ["second_objective"]), TuneOwnOptions,
    *recipe(("mlp", "cnn"), "conversion DNN (snnbench convert's)", group=TASK), Take(Calibration, group=TASK),
    Take(SimConfig, skip=("simulator",), group=TASK, defaults={"steps": 8}),  # nengo-dl only
    Take(ConversionTask, ("val_samples", "val_steps"), defaults={"val_samples": None}),  # auto: the profile's
    Take(ConversionTask, ("dataset", "onnx_model")), ModelInput, SearchSpace, doc="tune's settings")
OPTIONS = {"tune": Options}


def run(options: Options):
    auto_val_samples = options.val_samples is None
    resolved = replace(options, **from_profile(options, PROFILE_DEFAULTS))  # the profile's values resolved
    # the study's fixed settings: the options of ConversionTask's field names (no --simulator: its default)
    given = {f.name: getattr(resolved, f.name) for f in fields(ConversionTask) if hasattr(resolved, f.name)}
    model_input = from_args(ModelInput, resolved)
    require(bool(resolved.onnx_model) or model_input == ModelInput(),
            "--output and --input-scale / --input-mean / --input-std describe the file given with --onnx-model")
    task = ConversionTask(**{**given, "train_limit": resolved.train_limit or None, "space": from_args(SearchSpace, resolved),
                             "model_input": asdict(model_input) if resolved.onnx_model else {}})
    study = from_args(StudyOptions, resolved, seed=resolved.seed if resolved.sampler_seed is None else resolved.sampler_seed,
                      workers=resolved.workers or 1)
    task.check()
    study.check()
    if auto_val_samples:  # the profile's count, or the whole validation split when it holds fewer
        available = len(tuning.task_dataset(task.dataset, task.seed).validation)
        task = replace(task, val_samples=min(task.val_samples, available) or task.val_samples)
        resolved = replace(resolved, val_samples=task.val_samples)
        task.check()
    tuning.validation_set(task)  # too few validation samples: one line, before anything is written
    if resolved.best_params_out is not None:
        require(resolved.best_params_out.parent.is_dir(),
                f"--best-params-out {resolved.best_params_out}: folder {resolved.best_params_out.parent} does not exist")
    params = option_params(resolved, "cluster")
    params.update(storage=storage_label(resolved.storage),
                  best_params_out=str(resolved.best_params_out) if resolved.best_params_out else None)
    with executor_for(resolved) as executor:
        tuning.run_benchmark(task, study, best_params_out=resolved.best_params_out, score_test=not resolved.skip_test,
                             params=params, executor=executor)
