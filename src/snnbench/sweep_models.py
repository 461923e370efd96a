"""The noise sweep's models and each family's ``predict(x, NoiseSpec) -> logits``.

Models are the other benchmarks' own, trained on first use and cached by configuration (so a
sweep shares them with ``snnbench convert`` / ``snnbench multimodal`` run with the same settings):

* ``conversion-mlp``: the conversion study's MLP (snnbench.models.conversion), image only;
* ``multimodal``: the snntorch suite's DNN (ort-dnn, nengo-snn) or SNN (snntorch-snn) of one
  modality, in the suite's reference configuration (snnbench.models.multimodal).

DNNs run in ONNX Runtime with the noise inserted into a copy of their graph (snnbench.onnx_noise)
and, converted, in Nengo (snnbench.runners.NengoRunner adds the same draws itself).
"""

from pathlib import Path

import mlflow
import numpy as np

from snnbench.noise import NoiseSpec
from snnbench.onnx_noise import add_noise

# The conversion study's training settings (snnbench convert's defaults).
CONVERSION_TRAINING = dict(epochs=3, lr=2e-4, batch_size=100, train_limit=0)
# The suite's training settings per profile (snnbench multimodal's).
MULTIMODAL_TRAINING = {"quick": dict(epochs=2, train_limit=2000), "full": dict(epochs=200, train_limit=0)}


class Models:
    """Trained model folders (by name) and the predictors built from them."""

    def __init__(self, config: dict, device):
        self.config = config
        self.device = device
        self.folders = {}

    @staticmethod
    def name(subject) -> str:
        if subject.model == "conversion-mlp":
            return "conversion-mlp"
        return f"multimodal-{'snn' if subject.family == 'snntorch-snn' else 'dnn'}-{subject.modality}"

    def _training(self, defaults: dict) -> dict:
        """The study's own settings, with the sweep's --epochs / --train-limit where given."""
        chosen = dict(defaults)
        for key in ("epochs", "train_limit"):
            if self.config[key] is not None:
                chosen[key] = self.config[key]
        return chosen

    def folder(self, subject) -> Path:
        name = self.name(subject)
        if name not in self.folders:
            if subject.model == "conversion-mlp":
                from snnbench.models.conversion import trained_conversion_model

                t = self._training(CONVERSION_TRAINING)
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
            steps = {} if self.config["snn_steps"] is None else {"steps": self.config["snn_steps"]}
            return ModelSpec(subject.modality, "snn", **steps)
        return ModelSpec(subject.modality, "dnn")

    def train_settings(self):
        from snnbench.models.multimodal import TrainSettings

        t = self._training(MULTIMODAL_TRAINING[self.config["profile"]])
        return TrainSettings(epochs=t["epochs"], train_limit=t["train_limit"], seed=self.config["seed"])

    def prepare(self, subjects: list):
        """Train (or fetch) every model the sweep needs; log each on the active (parent) run."""
        for subject in subjects:
            name = self.name(subject)
            if name not in self.folders:
                mlflow.log_artifacts(str(self.folder(subject)), f"models/{name}")

    def predictor(self, subject):
        folder = self.folder(subject)
        if subject.family == "ort-dnn":
            return ort_predictor(folder / "model.onnx")
        if subject.family == "nengo-snn":
            return nengo_predictor(folder, self.config)
        return snntorch_predictor(folder, self.device)


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


def nengo_predictor(folder: Path, config: dict):
    """The DNN converted to a spiking Nengo network (LIF neurons, the sweep's rate scale).

    Simulators are built once: one without noise inputs (clean runs and std 0, which adds
    nothing), and one per noise position, built on its first noisy spec (NengoRunner builds on
    its first prediction, with noise input nodes for an active spec) and then given each further
    std / seed at that position through its ``noise`` spec, whose draws it feeds at run time."""
    from snnbench.runners import LayerParams, NengoRunner, SimConfig

    sim = SimConfig(steps=config["steps"], seed=config["seed"])
    layers = LayerParams(rate_scale=config["rate_scale"])
    runners = {}

    def predict(x: np.ndarray, spec: NoiseSpec) -> np.ndarray:
        key = spec.position if spec.active and spec.position != "input" else "none"
        if key not in runners:
            runners[key] = NengoRunner(folder, layers, sim, spec, counters=False)
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
