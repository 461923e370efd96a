"""The objective: the converted SNN's accuracy on validation samples (never test samples) for a
trial's setting, searched around the calibrated one; the model is tune's MNIST conversion DNN or
a user's ONNX model, the data the task's data set (:func:`snnbench.data.load_dataset`)."""

from functools import lru_cache
from pathlib import Path

import optuna

from snnbench.engines import ORT_DNN, NENGO_SNN
from snnbench.data import Dataset, FeatureSet, check_fits, load_dataset
from snnbench.errors import DataError
from snnbench.evaluation import metrics as M
from snnbench.tuning.space import layers_from_params
from snnbench.tuning.task import SECOND_STATS, ConversionTask


def trained_model_folder(task: ConversionTask) -> Path:
    """The model that the study converts: ``task.onnx_model``, or the cached trained DNN (a folder
    with ``model.onnx``)."""
    if task.onnx_model:
        if not Path(task.onnx_model).is_file():
            raise DataError(f"--onnx-model {task.onnx_model} not found; give a .onnx file")
        return Path(task.onnx_model)
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe
    return trained_conversion_model(task.arch, Recipe(task.epochs, task.lr, task.batch_size, task.train_limit or 0,
                                                      task.seed))


@lru_cache(maxsize=1)
def task_dataset(spec: str, seed: int) -> Dataset:
    """The task's data set (read once per process; its test split only when scoring the result)."""
    return load_dataset(spec, seed)


def validation_set(task: ConversionTask) -> FeatureSet:
    """The first ``val_samples`` samples of the data set's validation split (MNIST: the seeded 20%
    of its training split).

    Tune's own conversion DNN is trained on all 60,000 MNIST training images (as convert trains
    it), so these images were seen by the DNN; they are used because the test set must stay unseen.
    Calibration draws from the training split, which excludes them.
    """
    dataset = task_dataset(task.dataset, task.seed)
    available = len(dataset.validation)
    if task.val_samples > available:
        raise DataError(f"--val-samples {task.val_samples} is more than the {available} samples of data set "
                        f"{dataset.name}'s validation split; "
                        + (f"ask for at most {available}" if available else
                           "give a data set with labelled training samples or a validation split"))
    return dataset.validation.subset(slice(0, task.val_samples))


def calibrated_layers(task: ConversionTask, converted, training_inputs=None) -> list[dict]:
    """The calibrated setting (one dict per hidden layer), from the data set's training split
    (``training_inputs``: that split as the model takes it, where it is encoded)."""
    from snnbench.conversion.calibration import calibrated_document
    if training_inputs is None:
        training_inputs = task_dataset(task.dataset, task.seed).train.x
    document = calibrated_document(converted, training_inputs, task.calibration(), {"dt": task.dt})
    return document["layers"]


def chunk_ends(n: int, steps: int) -> list[int]:
    """Ends of the growing validation subsets: n/steps, 2n/steps, ..., n."""
    return sorted({int(round(n * (k + 1) / steps)) for k in range(steps)})


class ConversionObjective:
    """Validation accuracy (and optionally mean spikes per image) of the converted SNN for a trial.

    Accuracy is reported on growing validation subsets, so the pruner stops hopeless trials early.
    Built once per worker: the validation samples loaded and the model read and calibrated
    (training split) here, never the test split. ``base`` is the calibrated setting.
    """

    def __init__(self, task: ConversionTask):
        from snnbench.conversion import converted_files
        self.task = task
        self.dataset = task_dataset(task.dataset, task.seed)
        self.validation = validation_set(task)  # too few validation samples stop here, before any training
        self.prepared = None
        if task.onnx_model:  # normalised for the data set's samples (snnbench.conversion.onnx_prepare)
            from snnbench.conversion.onnx_prepare import ModelInput, prepared_copy
            self.prepared = prepared_copy(trained_model_folder(task), self.dataset.sample_shape,
                                          ModelInput(**task.model_input))
        self.x, self.y, self.checksums = self.inputs(self.validation.x), self.validation.y, self.validation.checksums
        self.folder = self.prepared.path if self.prepared else trained_model_folder(task)
        self.model_name = Path(task.onnx_model).stem if task.onnx_model else f"conversion-{task.arch}"  # as convert's
        self.converted = converted_files.load_any(self.folder)
        check_fits(self.dataset, self.dataset.sample_shape if self.prepared else self.converted.input_shape,
                   self.converted.n_outputs, task.calibration_samples, splits=("train", "validation"))
        self.n_hidden = len(self.converted.hidden)
        self.base = calibrated_layers(task, self.converted, self.inputs(self.dataset.train.x))

    def inputs(self, x):
        """Samples of the data set as the model takes them (a user's model: its input encoding)."""
        return x if self.prepared is None else self.prepared.encode(x, self.dataset.sample_shape)

    def snn(self, layers: list[dict]):
        """The converted SNN with a trial's setting, as the harness runs it (counters on, so that the
        network is the one convert runs)."""
        from snnbench import engines
        from snnbench.engines.nengo import LayerParams, SimConfig
        sim = SimConfig(**self.task.sim_dict(), seed=self.task.seed)
        return engines.build(NENGO_SNN, self.converted, dict(layers=[LayerParams(**layer) for layer in layers],
                                                               sim=sim))

    def snn_logits(self, layers: list[dict], x):
        with self.snn(layers) as model:
            return model.predict(x)

    def dnn_logits(self, x):
        from snnbench import engines
        return engines.build(ORT_DNN, self.folder).predict(x)

    def __call__(self, trial: optuna.Trial):
        params = self.task.space.suggest(trial, self.n_hidden, self.task.neuron)
        correct, start, activity = 0, 0, 0.0
        with self.snn(layers_from_params(params, self.base)) as model:
            for end in chunk_ends(len(self.y), self.task.val_steps):
                logits = model.predict(self.x[start:end], start=start)
                correct += int(M.correct(logits, self.y[start:end]).sum())
                accuracy = correct / end
                if self.task.multi_objective:
                    activity += SECOND_STATS[self.task.second_objective](model.last_activity)
                else:
                    trial.report(accuracy, end)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after {end} images")
                start = end
        if self.task.multi_objective:
            return accuracy, activity / len(self.y)  # per validation image
        return accuracy
