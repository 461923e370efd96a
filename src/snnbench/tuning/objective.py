"""The objective: the converted SNN's accuracy on validation images (never test images) for a
trial's setting, searched around the calibrated one."""

import optuna

from snnbench.errors import DataError
from snnbench.evaluation import metrics as M
from snnbench.tuning.space import layers_from_params
from snnbench.tuning.task import SECOND_STATS, ConversionTask


def trained_model_folder(task: ConversionTask):
    """The cached trained DNN (``model.onnx``) that the study converts."""
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe
    return trained_conversion_model(task.arch, Recipe(task.epochs, task.lr, task.batch_size, task.train_limit or 0,
                                                      task.seed))


def validation_set(task: ConversionTask):
    """The first ``val_samples`` images of the 20 % validation split of MNIST train.

    The conversion DNN is trained on all 60,000 training images (as convert trains it), so
    these images were seen by the DNN; they are used because the test set must stay unseen.
    Calibration draws from the other 80 %.
    """
    from snnbench.conversion.calibration import VALIDATION_FRACTION
    from snnbench.data import load_features, validation_split
    train = load_features("image", "train")
    _, val_idx = validation_split(len(train), VALIDATION_FRACTION, task.seed)
    if task.val_samples > len(val_idx):
        raise DataError(f"--val-samples {task.val_samples} is more than the {len(val_idx)} validation images")
    return train.subset(val_idx[: task.val_samples])


def calibrated_layers(task: ConversionTask, converted) -> list[dict]:
    """The calibrated setting (one dict per hidden layer), from MNIST training images."""
    from snnbench.conversion.calibration import calibrated_document, mnist_training_images
    document = calibrated_document(converted, mnist_training_images(task.seed), task.calibration(),
                                   {"dt": task.dt})
    return document["layers"]


def chunk_ends(n: int, steps: int) -> list[int]:
    """Ends of the growing validation subsets: n/steps, 2n/steps, ..., n."""
    return sorted({int(round(n * (k + 1) / steps)) for k in range(steps)})


class ConversionObjective:
    """Validation accuracy (and optionally mean spikes per image) of the converted SNN for a trial.

    Accuracy is reported on growing validation subsets, so the pruner stops hopeless trials early.
    Built once per worker: the model is read and calibrated (training images) and the validation
    images loaded here, never the test set. ``base`` is the calibrated setting.
    """

    def __init__(self, task: ConversionTask):
        from snnbench.conversion import onnx_io
        self.task = task
        self.folder = trained_model_folder(task)
        self.converted = onnx_io.load_any(self.folder)
        self.n_hidden = len(self.converted.hidden)
        self.base = calibrated_layers(task, self.converted)
        val = validation_set(task)
        self.x, self.y, self.checksums = val.x, val.y, val.checksums

    def snn(self, layers: list[dict]):
        """The converted SNN with a trial's setting, as the harness runs it (counters on, so that the
        network is the one convert runs)."""
        from snnbench import engines
        from snnbench.engines.nengo import LayerParams, SimConfig
        sim = SimConfig(**self.task.sim_dict(), seed=self.task.seed)
        return engines.build("nengo-snn", self.converted, dict(layers=[LayerParams(**layer) for layer in layers],
                                                               sim=sim))

    def snn_logits(self, layers: list[dict], x):
        with self.snn(layers) as model:
            return model.predict(x)

    def dnn_logits(self, x):
        from snnbench import engines
        return engines.build("ort-dnn", self.folder).predict(x)

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
