"""The study's result: its best trial, that setting as convert's ``--params-json`` document,
the optimisation plots and the trial counts."""

import json
import warnings

import numpy as np
import optuna
from optuna.trial import TrialState

from snnbench.errors import StorageError
from snnbench.tuning.space import layers_from_params
from snnbench.tuning.storage import open_storage, storage_label
from snnbench.tuning.task import ConversionTask


def best_trial(study):
    """The best trial; in a multi-objective study, the most accurate one on the Pareto front."""
    if len(study.directions) > 1:
        front = study.best_trials
        if not front:
            raise StorageError(f"study {study.study_name!r} has no completed trial yet; run some trials first")
        return max(front, key=lambda t: t.values[0])
    try:
        return study.best_trial
    except ValueError:
        raise StorageError(f"study {study.study_name!r} has no completed trial yet; run some trials first") from None


def params_document(study, trial=None) -> dict:
    """The best setting as convert's ``--params-json`` reads it: per-layer parameters and the sim."""
    task = ConversionTask.from_dict(study.user_attrs["task"])
    trial = trial or best_trial(study)
    return {"layers": layers_from_params(trial.params, study.user_attrs["base_layers"]), "sim": task.sim_dict(),
            "source": {"method": "tuned", "study": study.study_name, "trial": trial.number,
                       "validation_accuracy": trial.values[0], "val_samples": task.val_samples,
                       "model": {k: getattr(task, k) for k in ("arch", "epochs", "lr", "batch_size", "seed", "train_limit")}}}


def best_params_from_study(study_name: str, storage: str) -> dict:
    """The best setting of a stored study, in convert's ``--params-json`` format."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise StorageError(f"no study {study_name!r} in {storage_label(storage)}; check --study-name "
                           "and --storage (snnbench tune creates it)") from None
    if "task" not in study.user_attrs:
        raise StorageError(f"study {study_name!r} was not made by snnbench tune (no task attribute)")
    return params_document(study)


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
        second = study.user_attrs["task"]["second_objective"]
        plots["pareto_front.png"] = lambda: vis.plot_pareto_front(study, target_names=["accuracy", f"{second} per image"])
    paths = []
    for file_name, draw in plots.items():
        with warnings.catch_warnings():  # Optuna marks its matplotlib plots "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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
