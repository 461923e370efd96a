"""Optuna search over the neuron parameters that DNN->SNN conversion leaves untrained, around
the calibrated setting (snnbench.conversion.calibration), scored on validation images only.

The converted network's weights come from the DNN; its neurons' gain, bias, firing-rate scale,
output synapse and optionally LIF time constants do not. Calibration sets them from training
data; a study searches around that setting per hidden layer, maximising the SNN's accuracy on the
validation split, and the test set is read once, after the choice, to score the calibrated and
the tuned setting.

Modules, one concern each:

* :mod:`~snnbench.tuning.space`: the search space (factors on the calibrated setting);
* :mod:`~snnbench.tuning.task`: what a study keeps fixed (checked on resume);
* :mod:`~snnbench.tuning.storage`: storages, options, samplers, pruners, opening a study;
* :mod:`~snnbench.tuning.workers`: worker processes that stop at exactly ``n_trials``;
* :mod:`~snnbench.tuning.trial_runs`: each trial as a nested MLflow run;
* :mod:`~snnbench.tuning.best`: the best setting as a ``--params-json`` document, plots;
* :mod:`~snnbench.tuning.objective`: validation accuracy of a trial's setting;
* :mod:`~snnbench.tuning.scoring`: the test scores, after the study;
* :mod:`~snnbench.tuning.study`: the orchestration behind ``snnbench tune``.
"""

from snnbench.tuning.best import best_params_from_study, best_trial, log_plots, params_document, trial_counts
from snnbench.tuning.objective import (ConversionObjective, calibrated_layers, chunk_ends, conversion_objective,
                                       trained_model_folder, validation_set)
from snnbench.tuning.scoring import LABELS, score_on_test_set
from snnbench.tuning.space import SearchSpace, layers_from_params, trial_key
from snnbench.tuning.storage import (FINISHED, PRUNERS, SAMPLERS, StudyOptions, finished_count, load_study,
                                     make_pruner, make_sampler, open_storage, storage_label, study_storage)
from snnbench.tuning.study import run_benchmark
from snnbench.tuning.task import SECOND_OBJECTIVES, ConversionTask
from snnbench.tuning.trial_runs import TrialRunLogger
from snnbench.tuning.workers import SurplusTrial, exact_total, prepare_study, run_workers, work

__all__ = ["FINISHED", "LABELS", "PRUNERS", "SAMPLERS", "SECOND_OBJECTIVES", "ConversionObjective", "ConversionTask",
           "SearchSpace", "StudyOptions", "SurplusTrial", "TrialRunLogger", "best_params_from_study", "best_trial",
           "calibrated_layers", "chunk_ends", "conversion_objective", "exact_total", "finished_count",
           "layers_from_params", "load_study", "log_plots", "make_pruner", "make_sampler", "open_storage",
           "params_document", "prepare_study", "run_benchmark", "run_workers", "score_on_test_set",
           "storage_label", "study_storage", "trained_model_folder", "trial_counts", "trial_key", "validation_set", "work"]
