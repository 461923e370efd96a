"""The noise sweep's models and each family's ``predict(x, NoiseSpec) -> logits``.

Models are the other benchmarks' own, trained on first use and cached by configuration (so a
sweep shares them with ``snnbench convert`` / ``snnbench multimodal`` run with the same settings):

* ``conversion-mlp``: the conversion study's MLP (snnbench.models.conversion), image only;
* ``multimodal``: the snntorch suite's DNN (ort-dnn, nengo-snn) or SNN (snntorch-snn) of one
  modality, in the suite's reference configuration (snnbench.models.multimodal).

DNNs run in ONNX Runtime with the noise inserted into a copy of their graph (snnbench.onnx_noise)
and, converted by the calibrated method on their own training data, in Nengo
(snnbench.runners.NengoRunner adds the same draws itself).
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from snnbench import tracking
from snnbench.noise import NoiseSpec
from snnbench.onnx_noise import add_noise

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
                from snnbench.models.conversion import trained_conversion_model

                t = self.config["conversion_training"]
                self.folders[name] = trained_conversion_model("mlp", t["epochs"], t["lr"], t["batch_size"],
                                                              self.config["seed"], t["train_limit"] or None)
            else:
                from snnbench.models.multimodal import trained_multimodal_model

                self.folders[name] = trained_multimodal_model(self.spec(subject), self.train_settings(),
                                                              self.device)
        return self.folders[name]

    def spec(self, subject):
        from snnbench.models.multimodal import ModelSpec

        if subject.family == "snntorch-snn":
            return ModelSpec(subject.modality, "snn", steps=self.config["snn_steps"])
        return ModelSpec(subject.modality, "dnn")

    def train_settings(self):
        from snnbench.models.multimodal import TrainSettings

        t = self.config["suite_training"]
        return TrainSettings(epochs=t["epochs"], lr=t["lr"], batch_size=t["batch_size"], train_limit=t["train_limit"],
                             seed=self.config["seed"])

    def prepare(self, subjects: list):
        """Train (or fetch) every model the sweep needs; log each as an MLflow model of the
        active (parent) run (its id in ``model_ids``, by name)."""
        for subject in tqdm(subjects, desc="models", unit="model", dynamic_ncols=True):
            name = self.name(subject)
            if name not in self.model_ids:
                self.model_ids[name] = tracking.log_trained_model(self.folder(subject), name)

    def predictor(self, subject):
        folder = self.folder(subject)
        if subject.family == "ort-dnn":
            return ort_predictor(folder / "model.onnx")
        if subject.family == "nengo-snn":
            return nengo_predictor(folder, self.config, self.training_inputs(subject))
        return snntorch_predictor(folder, self.device)

    def training_inputs(self, subject) -> np.ndarray:
        """The inputs the subject's DNN was trained on (its calibration set is drawn from them):
        the conversion MLP's MNIST training part, or the suite's training part of its modality."""
        if subject.model == "conversion-mlp":
            from snnbench.calibration import mnist_training_images

            return mnist_training_images(self.config["seed"])
        from snnbench.models.multimodal import training_data

        return training_data(subject.modality, self.train_settings())[0].x


def ort_predictor(onnx_path: Path):
    """ONNX Runtime: the original graph when clean, a copy with noise inputs otherwise."""
    from snnbench.runners import OrtRunner

    clean = OrtRunner(onnx_path)
    graphs = {}

    def predict(x: np.ndarray, spec: NoiseSpec) -> np.ndarray:
        if spec.position == "none":
            return clean.predict(x)
        if spec.position not in graphs:
            graphs[spec.position] = add_noise(onnx_path, spec.position)
        graph = graphs[spec.position]
        return OrtRunner(graph.serialized(), feeds=graph.feeds(spec)).predict(x)
    return predict


def nengo_predictor(folder: Path, config: dict, training_inputs: np.ndarray):
    """The DNN converted to a spiking Nengo network by the calibrated method (snnbench.calibration:
    IF neurons, each layer's rate scale from its activations on ``training_inputs``, the DNN's own
    training data). Pre / post noise reaches the neurons in the units of the DNN's pre-activation /
    activation (a neuron's output averages its activation over the steps).

    Simulators are built once: one without noise inputs (clean runs and std 0, which adds
    nothing), and one per noise position, built on its first noisy spec (NengoRunner builds on
    its first prediction, with noise input nodes for an active spec) and then given each further
    std / seed at that position through its ``noise`` spec, whose draws it feeds at run time."""
    from snnbench.calibration import Calibration, calibrate
    from snnbench.onnx_io import load_any
    from snnbench.runners import NengoRunner, SimConfig

    model = load_any(folder)
    sim = SimConfig(steps=config["steps"], seed=config["seed"])
    layers, _ = calibrate(model, training_inputs, Calibration(seed=config["seed"]), sim.dt)
    runners = {}

    def predict(x: np.ndarray, spec: NoiseSpec) -> np.ndarray:
        key = spec.position if spec.active and spec.position != "input" else "none"
        if key not in runners:
            runners[key] = NengoRunner(model, layers, sim, spec, counters=False)
        runner = runners[key]
        runner.noise = spec
        return runner.predict(x)
    return predict


def snntorch_predictor(folder: Path, device):
    from snnbench.models.multimodal import load_trained_multimodal, predict as predict_multimodal

    model, _, _ = load_trained_multimodal(folder)

    def predict(x: np.ndarray, spec: NoiseSpec) -> np.ndarray:
        return predict_multimodal(model, x, spec, batch_size=500, device=device)
    return predict
