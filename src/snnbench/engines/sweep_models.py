"""The noise sweep's models, each as a harness model of its engine (snnbench.evaluation.harness).

Models are the other benchmarks' own, trained on first use and cached by configuration (so a
sweep shares them with ``snnbench convert`` / ``snnbench multimodal`` run with the same settings):

* ``conversion-mlp``: the conversion study's MLP (snnbench.models.conversion), image only;
* ``multimodal``: the snntorch suite's DNN (ort-dnn, nengo-snn) or SNN (snntorch-snn) of one
  modality, in the suite's reference configuration (snnbench.models.multimodal).

DNNs run in ONNX Runtime with the noise inserted into a copy of their graph (snnbench.conversion.onnx_noise)
and, converted by the calibrated method on their own training data, in Nengo
(snnbench.engines.runners.NengoRunner adds the same draws itself).
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from snnbench.training.suite import log_trained_model

class Models:
    """Trained model folders (by name) and the predictors built from them."""

    def __init__(self, config: dict, device):
        self.config = config
        self.device = device
        self.folders = {}
        self.model_ids = {}

    @staticmethod
    def name(subject) -> str:
        if subject.model == "conversion-mlp":
            return "conversion-mlp"
        return f"multimodal-{'snn' if subject.family == 'snntorch-snn' else 'dnn'}-{subject.modality}"

    def folder(self, subject) -> Path:
        name = self.name(subject)
        if name not in self.folders:
            if subject.model == "conversion-mlp":
                from snnbench.training.conversion import trained_conversion_model

                t = self.config["conversion_training"]
                self.folders[name] = trained_conversion_model("mlp", t["epochs"], t["lr"], t["batch_size"],
                                                              self.config["seed"], t["train_limit"] or None)
            else:
                from snnbench.training.suite import trained_multimodal_model

                self.folders[name] = trained_multimodal_model(self.spec(subject), self.train_settings(),
                                                              self.device)
        return self.folders[name]

    def spec(self, subject):
        from snnbench.models.multimodal import ModelSpec

        if subject.family == "snntorch-snn":
            return ModelSpec(subject.modality, "snn", steps=self.config["snn_steps"])
        return ModelSpec(subject.modality, "dnn")

    def train_settings(self):
        from snnbench.training.suite import TrainSettings

        t = self.config["suite_training"]
        return TrainSettings(epochs=t["epochs"], lr=t["lr"], batch_size=t["batch_size"], train_limit=t["train_limit"],
                             seed=self.config["seed"])

    def prepare(self, subjects: list):
        """Train (or fetch) every model the sweep needs; log each as an MLflow model of the
        active (parent) run (its id in ``model_ids``, by name)."""
        for subject in tqdm(subjects, desc="models", unit="model", dynamic_ncols=True):
            name = self.name(subject)
            if name not in self.model_ids:
                self.model_ids[name] = log_trained_model(self.folder(subject), name)

    def model(self, subject):
        """The subject as a harness model (snnbench.evaluation.harness) of its engine."""
        from snnbench.engines.models import OrtModel

        folder = self.folder(subject)
        if subject.family == "ort-dnn":
            return OrtModel(folder / "model.onnx")
        if subject.family == "nengo-snn":
            return nengo_model(folder, self.config, self.training_inputs(subject))
        return snntorch_model(folder, self.device, self.config["seed"])

    def training_inputs(self, subject) -> np.ndarray:
        """The inputs the subject's DNN was trained on (its calibration set is drawn from them):
        the conversion MLP's MNIST training part, or the suite's training part of its modality."""
        if subject.model == "conversion-mlp":
            from snnbench.conversion.calibration import mnist_training_images

            return mnist_training_images(self.config["seed"])
        from snnbench.training.suite import training_data

        return training_data(subject.modality, self.train_settings())[0].x


def nengo_model(folder: Path, config: dict, training_inputs: np.ndarray):
    """The DNN converted to a spiking Nengo network by the calibrated method (snnbench.conversion.calibration:
    IF neurons, each layer's rate scale from its activations on ``training_inputs``, the DNN's own
    training data), as a harness model. Pre / post noise reaches the neurons in the units of the
    DNN's pre-activation / activation (a neuron's output averages its activation over the steps).
    Its simulators are built once per noise position and given each further std / seed at run time."""
    from snnbench.conversion.calibration import Calibration, calibrate
    from snnbench.engines.models import NengoModel
    from snnbench.conversion.onnx_io import load_any
    from snnbench.engines.runners import SimConfig

    model = load_any(folder)
    sim = SimConfig(steps=config["steps"], seed=config["seed"])
    layers, _ = calibrate(model, training_inputs, Calibration(seed=config["seed"]), sim.dt)
    return NengoModel(model, layers, sim)


def snntorch_model(folder: Path, device, seed: int):
    from snnbench.engines.models import SnntorchModel
    from snnbench.training.suite import load_trained_multimodal

    return SnntorchModel(load_trained_multimodal(folder)[0], device, seed=seed)
