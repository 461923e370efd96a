"""Optuna search over the neuron parameters that DNN->SNN conversion leaves untrained (gain, bias,
firing-rate scale, output synapse, optionally LIF time constants), per hidden layer around the
calibrated setting (snnbench.conversion.calibration), maximising the SNN's accuracy on the
validation split of the task's data set (snnbench.data.load_dataset). The test split is read once,
after the choice, to score the calibrated and the tuned setting.

Modules: :mod:`~snnbench.tuning.space` (the search space), :mod:`~snnbench.tuning.task` (what a
study keeps fixed), :mod:`~snnbench.tuning.storage` (storages, samplers, pruners, opening a study),
:mod:`~snnbench.tuning.workers` (workers that stop at exactly ``n_trials``, each trial a nested
MLflow run), :mod:`~snnbench.tuning.objective` (validation accuracy of a trial's setting) and
:mod:`~snnbench.tuning.optuna_run` (``snnbench tune``'s Optuna study as a parent MLflow run, its best
setting, the test scores).
"""

from snnbench.tuning.objective import (ConversionObjective, calibrated_layers, task_dataset, trained_model_folder,
                                       validation_set)
from snnbench.tuning.space import SearchSpace, layers_from_params
from snnbench.tuning.storage import (FINISHED, PRUNERS, SAMPLERS, StudyOptions, load_study, open_storage,
                                     storage_label, study_storage)
from snnbench.tuning.optuna_run import (best_params_document, best_params_from_study, run_benchmark,
                                        score_on_test_set)
from snnbench.tuning.task import SECOND_OBJECTIVES, ConversionTask
from snnbench.tuning.workers import SurplusTrial, exact_total, prepare_study, run_workers

__all__ = ["FINISHED", "PRUNERS", "SAMPLERS", "SECOND_OBJECTIVES", "ConversionObjective", "ConversionTask",
           "SearchSpace", "StudyOptions", "SurplusTrial", "best_params_document", "best_params_from_study",
           "calibrated_layers",
           "exact_total", "layers_from_params", "load_study", "open_storage", "prepare_study",
           "run_benchmark", "run_workers", "score_on_test_set", "storage_label", "study_storage", "task_dataset",
           "trained_model_folder", "validation_set"]
