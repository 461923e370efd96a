"""``snnbench tune``'s Optuna study as a parent MLflow run, its workers, and its result: the best
trial, that setting as convert's ``--params-json`` document, the optimisation plots and trial
counts, and, once the choice is made on validation images, the test scores."""

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from snnbench.conversion.nengo_net import params_document
from snnbench.engines import NENGO_SNN, ORT_DNN
from snnbench.errors import StorageError
from snnbench.evaluation.harness import ResultKey, log_result_table, result_row
from snnbench.tuning.objective import ConversionObjective, task_dataset
from snnbench.tuning.space import layers_from_params
from snnbench.tuning.storage import StudyOptions, experimental, load_study, open_storage, storage_label, study_storage
from snnbench.tuning.task import ConversionTask
from snnbench.tuning.workers import prepare_study, run_workers

LABELS = ("calibrated", "tuned")  # the untuned (calibrated) setting, and the study's choice
MODEL_FIELDS = ("arch", "epochs", "lr", "batch_size", "seed", "train_limit")  # the trained DNN's, in the document


def best_trial(study):
    """The best trial; in a multi-objective study, the most accurate one on the Pareto front."""
    try:
        if len(study.directions) > 1:
            return max(study.best_trials, key=lambda t: t.values[0])
        return study.best_trial
    except ValueError:  # no completed trial (max of an empty front, or Optuna's own)
        raise StorageError(f"study {study.study_name!r} has no completed trial yet; run some trials first") from None


def best_params_document(study) -> dict:
    """The best setting as convert's ``--params-json`` reads it: per-layer parameters and the sim."""
    task = ConversionTask.from_dict(study.user_attrs["task"])
    trial = best_trial(study)
    model = {"onnx_model": task.onnx_model} if task.onnx_model else {k: getattr(task, k) for k in MODEL_FIELDS}
    return params_document(layers_from_params(trial.params, study.user_attrs["base_layers"]), task.sim_dict(),
                           {"method": "tuned", "study": study.study_name, "trial": trial.number,
                            "validation_accuracy": trial.values[0], "val_samples": task.val_samples,
                            "model": model, "dataset": task.dataset})


def best_params_from_study(study_name: str, storage: str) -> dict:
    """The best setting of a stored study, in convert's ``--params-json`` format."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise StorageError(f"no study {study_name!r} in {storage_label(storage)}; check --study-name "
                           "and --storage (snnbench tune creates it)") from None
    if "task" not in study.user_attrs:
        raise StorageError(f"study {study_name!r} was not made by snnbench tune (no task attribute)")
    return best_params_document(study)


def log_plots(study, folder):
    """Optimisation history and parameter importances as PNG files in ``folder``; returns paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    name = "validation accuracy"
    plots = {"optimization_history.png": lambda: vis.plot_optimization_history(study, target=target, target_name=name)}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2:
        plots["param_importances.png"] = lambda: vis.plot_param_importances(study, target=target, target_name=name)
    if len(study.directions) > 1:
        names = ["accuracy", f"{study.user_attrs['task']['second_objective']} per image"]
        plots["pareto_front.png"] = lambda: vis.plot_pareto_front(study, target_names=names)
    paths = []
    for file_name, draw in plots.items():
        with experimental():  # Optuna's matplotlib plots
            axes = draw()
        figure = axes.figure if hasattr(axes, "figure") else np.ravel(axes)[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = folder / file_name
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def trial_counts(study) -> dict:
    trials = study.get_trials(deepcopy=False)
    counts = {f"trials_{state.name.lower()}": sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    counts["trials_surplus"] = sum(bool(t.user_attrs.get("surplus")) for t in trials)
    counts["trials_fail"] -= counts["trials_surplus"]
    return counts


def score_on_test_set(objective, document: dict, test=None) -> dict:
    """Test accuracy of the DNN (ONNX Runtime) and of the SNN with the calibrated setting
    (``objective.base``) and with the study's best one (``document``); ``test`` defaults to the
    task's data set's test split. Metric names carry the labels: ``snn_test_accuracy_calibrated`` /
    ``_tuned``; ``rows`` holds the three scores as result rows (snnbench.evaluation.harness.ResultRow)."""
    from snnbench.evaluation.metrics import Accuracy

    task = objective.task
    # the objective's data set and model; an objective without them (a stand-in) stands for tune's own MNIST DNN
    dataset = getattr(objective, "dataset", None) or task_dataset(ConversionTask.dataset, task.seed)
    model = getattr(objective, "model_name", None) or f"conversion-{task.arch}"
    test = dataset.test if test is None else test  # read only here, after the study
    y = np.asarray(test.y)
    x = objective.inputs(test.x)
    dnn = Accuracy()(None, objective.dnn_logits(x), y, None)
    scores = {"test_images": len(y), "dnn_test_accuracy": dnn["accuracy"]}
    settings = {"calibrated": objective.base, "tuned": document["layers"]}
    def key(engine: str, method: str = "", steps: int = 1) -> ResultKey:
        return ResultKey("tune_conversion", engine, model, dataset.modality, method, steps, seed=task.seed)

    scores["rows"] = [result_row(key(ORT_DNN), dnn)]
    for label in LABELS:
        snn = Accuracy()(None, objective.snn_logits(settings[label], x), y, None)
        scores["rows"].append(result_row(key(NENGO_SNN, label, task.steps), snn))
        for suffix in ("", "_ci_low", "_ci_high"):
            scores[f"snn_test_accuracy_{label}{suffix}"] = snn[f"accuracy{suffix}"]
        scores[f"conversion_loss_{label}_points"] = 100.0 * (dnn["accuracy"] - snn["accuracy"])
    return scores


def run_benchmark(task: ConversionTask, options: StudyOptions, *, params: dict | None = None,
                  best_params_out=None, score_test: bool = True,
                  objective_factory: Callable = ConversionObjective, executor=None) -> dict:
    """Run (or resume) the study as a parent MLflow run, its trials on ``executor``
    (snnbench.execution; default: this process, or a local cluster of ``options.workers``);
    returns the best setting's document."""
    import mlflow

    from snnbench.tracking.runs import benchmark_run, log_dataset

    task.check()
    options.check()
    storage = study_storage(options.storage, executor)  # a bad storage fails now, not after the model is trained
    if storage is None:
        open_storage(options.storage)
    objective = objective_factory(task)  # builds the model before any worker starts
    study = prepare_study(task, options, objective.base, storage)
    params = params or {**task.to_dict(), **asdict(options), "storage": storage_label(options.storage)}
    checksums = getattr(objective, "checksums", None)
    validation = getattr(objective, "validation", None)  # the samples trials are scored on
    with benchmark_run("tune_conversion", params, run_name=options.study_name, data_checksums=checksums) as run:
        mlflow.set_tags({"optuna.study": options.study_name, "optuna.storage": storage_label(options.storage),
                         **task_dataset(task.dataset, task.seed).tags})
        if validation is not None:
            log_dataset(validation, "validation")
        run_workers(task, options, objective_factory, run.info.run_id, objective=objective, executor=executor)
        study = load_study(options, task, storage=storage)
        counts = trial_counts(study)
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        document = best_params_document(study)
        mlflow.log_metric("best_validation_accuracy", document["source"]["validation_accuracy"])
        calibrated = [t for t in study.trials if t.user_attrs.get("untuned") and t.values]
        if calibrated:  # the study's first trial: the calibrated setting it started from
            mlflow.log_metric("calibrated_validation_accuracy", calibrated[0].values[0])
        mlflow.log_dict(params_document(study.user_attrs["base_layers"], task.sim_dict(),
                                        {"method": "calibrated", **asdict(task.calibration())}), "calibrated_params.json")
        mlflow.log_dict(document, "best_params.json")
        if best_params_out is not None:
            Path(best_params_out).write_text(json.dumps(document, indent=1))
        with tempfile.TemporaryDirectory() as folder:
            for path in log_plots(study, Path(folder)):
                mlflow.log_artifact(str(path), "plots")
        if score_test:
            scores = score_on_test_set(objective, document)  # the test set, read once, after the choice
            mlflow.log_param("test_images", scores.pop("test_images"))
            log_result_table(scores.pop("rows"))
            mlflow.log_metrics(scores)
            document["test"] = scores
    return document
