"""Orchestration of ``snnbench tune``: the study as a parent MLflow run, its workers, the best
setting, and, once the choice is made on validation images, the test scores."""

import json
from dataclasses import asdict
from typing import Callable

from snnbench.evaluation.harness import log_result_table
from snnbench.tuning.best import log_plots, params_document, trial_counts
from snnbench.tuning.objective import conversion_objective
from snnbench.tuning.scoring import score_on_test_set
from snnbench.tuning.storage import StudyOptions, load_study, open_storage, storage_label, study_storage
from snnbench.tuning.task import ConversionTask
from snnbench.tuning.workers import prepare_study, run_workers


def run_benchmark(task: ConversionTask, options: StudyOptions, *, params: dict | None = None,
                  best_params_out=None, score_test: bool = True,
                  objective_factory: Callable = conversion_objective, executor=None) -> dict:
    """Run (or resume) the study as a parent MLflow run, its trials on ``executor``
    (snnbench.execution; default: this process, or a local cluster of ``options.workers``);
    returns the best setting's document."""
    import tempfile
    from pathlib import Path

    import mlflow

    from snnbench.tracking.runs import benchmark_run

    task.check()
    options.check()
    storage = study_storage(options.storage, executor)  # a bad storage fails now, not after the model is trained
    if storage is None:
        open_storage(options.storage)
    objective = objective_factory(task)  # builds the model before any worker starts
    study = prepare_study(task, options, objective.base, storage)
    params = params or {**task.to_dict(), **asdict(options), "storage": storage_label(options.storage)}
    checksums = getattr(objective, "checksums", None)
    with benchmark_run("tune_conversion", params, run_name=options.study_name, data_checksums=checksums) as run:
        mlflow.set_tags({"optuna.study": options.study_name, "optuna.storage": storage_label(options.storage)})
        run_workers(task, options, objective_factory, run.info.run_id, objective=objective, executor=executor)
        study = load_study(options, task, storage=storage)
        counts = trial_counts(study)
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        document = params_document(study)
        mlflow.log_metric("best_validation_accuracy", document["source"]["validation_accuracy"])
        calibrated = [t for t in study.trials if t.user_attrs.get("untuned") and t.values]
        if calibrated:  # the study's first trial: the calibrated setting it started from
            mlflow.log_metric("calibrated_validation_accuracy", calibrated[0].values[0])
        mlflow.log_dict({"layers": study.user_attrs["base_layers"], "sim": task.sim_dict(),
                         "source": {"method": "calibrated", **asdict(task.calibration())}}, "calibrated_params.json")
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
