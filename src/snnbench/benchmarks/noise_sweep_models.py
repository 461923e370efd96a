"""The noise sweep's models under test, each as a harness model of its engine: trained here (cached
by configuration, shared with ``convert`` / ``multimodal`` run with the same settings), referenced
from a ``multimodal_study`` run (``models_from``: its size-S DNNs and reference SNNs) or the user's
(``onnx_model``; ``snntorch_model``, a logged MLflow PyTorch model). DNNs run in ONNX Runtime with
the noise in a copy of their graph (snnbench.conversion.onnx_noise) and, converted by the calibrated
method on their own training data, in Nengo, which adds the same draws itself.
"""

import json
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from snnbench import engines
from snnbench.engines import ORT_DNN, SNNTORCH_SNN
from snnbench.conversion.onnx_prepare import ModelInput, PreparedModel, prepared_copy
from snnbench.data import BUILT_IN, Dataset, FeatureSet, feature_size, load_dataset
from snnbench.engines.nengo import SimConfig
from snnbench.errors import DataError
from snnbench.models.multimodal import ModelSpec, build_model
from snnbench.models.export import onnx_file
from snnbench.tracking.references import local_copy, run_models
from snnbench.training.conversion import trained_conversion_model
from snnbench.training.recipes import Recipe
from snnbench.training.suite import TrainSettings, load_trained_multimodal, log_trained_model, test_data, training_data



@dataclass(frozen=True)
class SweepSettings:
    """A sweep's settings, every default resolved (snnbench.benchmarks.noise_sweep.settings): what
    decides its results, logged as its parent run's params (:meth:`params`)."""
    stds: list = field(default_factory=list)
    positions: list = field(default_factory=list)
    families: list = field(default_factory=list)
    modalities: list = field(default_factory=list)
    perturbations: list = field(default_factory=lambda: ["gaussian"])
    noise_mode: str = "frozen"
    seed: int = 0
    profile: str = "quick"
    device: str = "cpu"
    snn_steps: int = ModelSpec().steps
    models_from: str = ""
    onnx_model: str = ""
    snntorch_model: str = ""
    dataset: str = ""
    model_input: dict | None = None  # the --onnx-model's ModelInput
    conversion_training: dict = field(default_factory=dict)  # the conversion MLP's Recipe, as params
    suite_training: dict = field(default_factory=dict)  # the suite's TrainSettings, as params
    test_limit: int = 0
    steps: int = 20
    seeds: int = 1
    model_seeds: list = field(default_factory=list)  # none: the seed's model

    def params(self) -> dict:
        """The settings as the parent run's params (model_input only for a user's ONNX file)."""
        return {k: v for k, v in asdict(self).items() if not (k == "model_input" and v is None)}

    @property
    def user(self) -> bool:
        """Whether the models swept are the user's."""
        return bool(self.onnx_model or self.snntorch_model)


@dataclass(frozen=True)
class Subject:
    """One model under test."""
    family: str          # the engine: ort-dnn, nengo-snn, snntorch-snn, loihi-emulator
    model: str           # conversion-mlp (the conversion study's MLP, image only), multimodal (the suite's), user
    modality: str
    model_seed: int = 0  # the trained model's seed

    @property
    def label(self) -> str:
        return f"{self.family}/{self.model}/{self.modality}"

    @property
    def kind(self) -> str:
        return "snn" if self.family == SNNTORCH_SNN else "dnn"


@cache
def user_dataset(spec: str, seed: int) -> Dataset:
    """The data set of a user's model (read once per process)."""
    return load_dataset(spec, seed)


def dataset_modality(spec: str, seed: int) -> str:
    """The modality (the result tables' column) of a user's model's data set."""
    return BUILT_IN.get(spec) or user_dataset(spec, seed).modality


def _user_data(settings: SweepSettings) -> Dataset | None:
    """A user's own data set (not MNIST, FSDD or their pairing), or None."""
    spec = settings.dataset
    return user_dataset(spec, settings.seed) if spec and spec not in BUILT_IN else None


_TEST_DATA = {}


def sweep_test_data(settings: SweepSettings, modality: str) -> FeatureSet:
    """The sweep's test samples: a fixed seeded subset of ``test_limit`` (0: all) of the test split (read
    once per process: every child of the modality reads them)."""
    key = (settings.dataset, settings.seed, settings.test_limit, modality)
    if key not in _TEST_DATA:
        own = _user_data(settings)
        if own is None:
            _TEST_DATA[key] = test_data(modality, settings.test_limit)
        else:
            test, limit = own.test, settings.test_limit
            _TEST_DATA[key] = test.subset(np.sort(np.random.default_rng(0).permutation(len(test))[:limit])) \
                if 0 < limit < len(test) else test
    return _TEST_DATA[key]


def sample_shape(settings: SweepSettings, modality: str) -> tuple:
    """A sample's shape: the user's data set's, else (C, H, W) of an MNIST image, (features,) otherwise."""
    own = _user_data(settings)
    if own is not None:
        return own.sample_shape
    return (1, 28, 28) if modality == "image" else (feature_size(modality),)


def user_onnx(settings: SweepSettings) -> PreparedModel:
    """A user's ONNX model, normalised for the data set's samples (snnbench.conversion.onnx_prepare):
    one line naming what does not fit if it cannot be."""
    source = local_copy(settings.onnx_model)
    return prepared_copy(onnx_file(source),
                         sample_shape(settings, settings.modalities[0]), ModelInput(**settings.model_input),
                         f"--dataset {settings.dataset}")


def reference_spec(modality: str, kind: str, snn_steps: int) -> ModelSpec:
    """The suite's model of a sweep: size S, and for an SNN the reference neuron (LIF, soft reset)."""
    return ModelSpec(modality, "snn", steps=snn_steps) if kind == "snn" else ModelSpec(modality, "dnn")


def study_references(run_id: str, snn_steps: int) -> dict:
    """(kind, modality, seed) -> ``models:/`` reference of a multimodal_study run's reference models."""
    out = {}
    for entry in run_models(run_id):
        spec = reference_spec(entry["modality"], entry["family"], snn_steps).as_dict()
        if all(str(value) == entry.get(name) for name, value in spec.items()):
            out[(entry["family"], entry["modality"], int(entry["seed"]))] = entry["model"]
    if not out:
        raise DataError(f"run {run_id} holds no size-S DNN or reference SNN (LIF, soft reset, {snn_steps} steps); "
                        "pass a multimodal_study run, or --snn-steps to match its SNNs")
    return out


class Models:
    """Where each subject's model comes from, its engine model, and its MLflow model id."""

    def __init__(self, settings: SweepSettings, device):
        self.settings = settings
        self.device = device
        self.folders = {}
        self.model_ids = {}
        self._last_inputs = (None, None)
        self.references = (study_references(settings.models_from, settings.snn_steps)
                           if settings.models_from else {})

    def __getstate__(self):  # sent to a cluster's workers with each unit: without the kept training inputs
        return {**self.__dict__, "_last_inputs": (None, None)}

    def name(self, subject: Subject) -> str:
        name = {"conversion-mlp": "conversion-mlp", "user": f"user-{subject.kind}"}.get(
            subject.model, f"multimodal-{subject.kind}-{subject.modality}")
        return name + (f"-seed{subject.model_seed}" if len(self.settings.model_seeds) > 1 else "")

    def reference(self, subject: Subject) -> str | None:
        """The store reference (or user file) of a model trained elsewhere, or None."""
        if subject.model == "user":
            return self.settings.snntorch_model if subject.kind == "snn" else self.settings.onnx_model
        if subject.model == "multimodal" and self.references:
            key = (subject.kind, subject.modality, subject.model_seed)
            if key not in self.references:
                raise DataError(f"run {self.settings.models_from} has no {subject.kind} model of modality "
                                f"{subject.modality} and seed {subject.model_seed}")
            return self.references[key]
        return None

    def onnx_file(self, subject: Subject) -> Path:
        """The subject's DNN as an ONNX file."""
        path = self.folder(subject)
        return onnx_file(path)

    def folder(self, subject: Subject) -> Path:
        """A local folder (or file) of the subject's model, trained first if it is missing."""
        name = self.name(subject)
        if name not in self.folders:
            reference = self.reference(subject)
            if subject.model == "user" and subject.kind == "dnn":
                self.folders[name] = self.prepared.folder
            elif reference is not None:
                self.folders[name] = local_copy(reference)
            elif subject.model == "conversion-mlp":
                recipe = Recipe(**self.settings.conversion_training, seed=subject.model_seed)
                self.folders[name] = trained_conversion_model("mlp", recipe)
            else:
                from snnbench.training.grid import trained_multimodal_model

                self.folders[name] = trained_multimodal_model(
                    reference_spec(subject.modality, subject.kind, self.settings.snn_steps),
                    self.train_settings(subject.model_seed), self.device)
        return self.folders[name]

    @cached_property
    def prepared(self) -> PreparedModel:
        """The user's ONNX model, normalised (the same folder in every process: the cache's)."""
        return user_onnx(self.settings)

    def encodes(self, subject: Subject) -> bool:
        """Whether the subject runs the user's ONNX model, whose inputs are encoded as it takes them."""
        return subject.model == "user" and subject.kind == "dnn"

    def inputs(self, subject: Subject, data: FeatureSet) -> FeatureSet:
        """``data`` as the subject's model takes it."""
        if not self.encodes(subject):
            return data
        x = self.prepared.encode(data.x, sample_shape(self.settings, subject.modality))
        return FeatureSet(x, data.y, data.checksums, data.origins)

    def train_settings(self, seed: int) -> TrainSettings:
        return TrainSettings(**self.settings.suite_training, seed=seed)

    def prepare(self, subjects: list):
        """Fetch (or train) every model the sweep needs; ``model_ids`` by name: a model trained here
        is logged as an MLflow model of the active (parent) run, a referenced one keeps its id
        (None for a user's file)."""
        for subject in tqdm(subjects, desc="models", unit="model", dynamic_ncols=True):
            name = self.name(subject)
            if name in self.model_ids:
                continue
            folder, reference = self.folder(subject), self.reference(subject)
            if reference is None:
                self.model_ids[name] = log_trained_model(folder, name)
            else:
                self.model_ids[name] = reference.removeprefix("models:/") if reference.startswith("models:/") else None

    def model(self, subject: Subject, onnx_file: Path | None = None, module=None, calibrated_on: Path | None = None,
              **settings):
        """The subject as a harness model (snnbench.evaluation.harness) of its engine (a DNN: of
        ``onnx_file`` instead of its own file if given, e.g. a copy with perturbed weights, converted with
        the rate scales of ``calibrated_on`` if given and the converted engine's further ``settings``; the
        snntorch SNN: ``module`` instead of its own)."""
        if subject.family == SNNTORCH_SNN:
            return engines.build(subject.family, module or self.torch_module(subject),
                                 dict(device=self.device, seed=self.settings.seed))
        onnx_file = onnx_file or self.onnx_file(subject)
        if subject.family == ORT_DNN:
            return engines.build(ORT_DNN, onnx_file)
        return converted_model(subject.family, onnx_file, self.settings, self.training_inputs(subject), calibrated_on,
                               **settings)

    def torch_module(self, subject: Subject):
        """The SNN as a torch module: from the cache's ``state.pt``, or a logged PyTorch model
        (its pickled module's weights loaded into the family's current definition, without
        MLflow's loader, which re-imports the package from the model's code copy)."""
        folder = self.folder(subject)
        if (folder / "state.pt").exists():
            return load_trained_multimodal(folder)[0]
        pickled, config = folder / "data" / "model.pth", folder / "extra_files" / "config.json"
        if not pickled.exists() or not config.exists():
            raise DataError(f"{self.reference(subject)} is not a logged snntorch model of the suite's family "
                            "(no data/model.pth and extra_files/config.json)")
        model = build_model(ModelSpec(**json.loads(config.read_text())["model"]))
        model.load_state_dict(torch.load(pickled, map_location="cpu", weights_only=False).state_dict())
        return model.eval()

    def training_inputs(self, subject: Subject) -> np.ndarray:
        """The inputs the subject's DNN was trained on, its calibration set's source (a user's
        model: the dataset's training part; a suite model trained elsewhere: as its config.json says).
        The last model's are kept: its children, which run in turn, each build a model calibrated on them."""
        key = (subject.model, subject.modality, subject.model_seed)
        if self._last_inputs[0] != key:
            self._last_inputs = (key, self._read_training_inputs(subject))
        return self._last_inputs[1]

    def _read_training_inputs(self, subject: Subject) -> np.ndarray:
        if subject.model == "conversion-mlp":
            from snnbench.conversion.calibration import mnist_training_images

            return mnist_training_images(subject.model_seed)
        settings = self.train_settings(subject.model_seed)
        folder = self.folder(subject)
        # a cached model's configuration, or a logged model's copy of it (MLflow's extra_files/)
        config = next((c for c in (folder / "config.json", folder / "extra_files" / "config.json") if c.exists()), None)
        if subject.model == "multimodal" and config is not None:
            settings = TrainSettings(**json.loads(config.read_text())["training"])
        elif subject.model == "user":
            settings = TrainSettings(seed=self.settings.seed)
        own = _user_data(self.settings) if subject.model == "user" else None
        x = own.train.x if own is not None else training_data(subject.modality, settings)[0].x
        return self.prepared.encode(x, sample_shape(self.settings, subject.modality)) if self.encodes(subject) else x


def converted_model(engine: str, model_path: Path, sweep: SweepSettings, training_inputs: np.ndarray,
                    calibrated_on: Path | None = None, **settings):
    """The DNN converted by the calibrated method (each layer's rate scale from its activations on
    ``training_inputs``, the DNN's own training data; those of the network ``calibrated_on`` if given, of
    the same layers), as a harness model of ``engine`` (nengo-snn or loihi-emulator). Pre / post noise
    reaches the neurons in the units of the DNN's pre-activation / activation; its simulators are built
    once per noise position; ``settings``: the engine's further settings."""
    sim = SimConfig(steps=sweep.steps, seed=sweep.seed)
    if calibrated_on is None:
        return engines.build(engine, model_path, dict(sim=sim, calibration_inputs=training_inputs, **settings))
    layers = engines.converted_layers(calibrated_on, calibration_inputs=training_inputs, seed=sim.seed, dt=sim.dt)[1]
    return engines.build(engine, model_path, dict(sim=sim, layers=layers, **settings))
