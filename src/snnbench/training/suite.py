"""The multimodal suite's trained models: training settings, the data each model trains and is
tested on, and their cache folders (``state.pt``, ``summary.json``, ``config.json`` and, for a DNN,
``model.onnx``), read with :func:`load_trained_multimodal`."""

import json
import logging
from importlib import metadata
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import mlflow
import torch
from torch import nn

from snnbench.config import check_choice
from snnbench.data import VALIDATIONS, FeatureSet, Rows, Tables, load_tables, validation_rows
from snnbench.errors import DataError
from snnbench.models.export import ONNX_FILE, export_onnx
from snnbench.models.multimodal import N_CLASSES, ModelSpec, build_model, parameter_count
from snnbench.training.cache import CONFIG, read_summary
from snnbench.training.recipes import SUITE, Recipe

# FSDD: the reference study held out 500 of the 2,700 training recordings for validation.
AUDIO_VALIDATION = 500 / 2700
VALIDATION = 0.2


@dataclass(frozen=True)
class TrainSettings(Recipe):
    """The suite's recipe (snnbench.training.recipes.Recipe; epochs and learning rate default to
    the quick profile's) with its data protocol."""
    epochs: int = SUITE["quick"].epochs
    lr: float = SUITE["quick"].lr
    pair_seed: int = 0    # image <-> recording pairing of the fused set
    validation: str = "recordings"  # held-out validation samples (snnbench.data.VALIDATIONS)

    def __post_init__(self):
        super().__post_init__()
        check_choice("validation protocol", self.validation, VALIDATIONS)


@lru_cache(maxsize=8)
def tables(modality: str, split: str) -> Tables:
    return load_tables(modality, split)


@lru_cache(maxsize=4)
def features(modality: str, split: str, pair_seed: int = 0) -> FeatureSet:
    split_tables = tables(modality, split)
    return split_tables.features(split_tables.all_rows(pair_seed))


def training_rows(modality: str, settings: TrainSettings) -> tuple[Rows, Rows]:
    """(training rows, validation rows) of ``tables(modality, "train")``: a seeded subset of the
    training split (``train_limit``), then a seeded hold-out under ``settings.validation`` (20% of
    the images; audio: 500 of 2,700 recordings, as in the reference study; snnbench.data.validation_rows)."""
    return validation_rows(tables(modality, "train"), settings.validation, settings.seed, settings.pair_seed,
                           settings.train_limit, VALIDATION, AUDIO_VALIDATION)


def training_data(modality: str, settings: TrainSettings) -> tuple[FeatureSet, FeatureSet]:
    """(train, validation) features; see :func:`training_rows`."""
    return tuple(tables(modality, "train").features(rows) for rows in training_rows(modality, settings))


def test_data(modality: str, test_limit: int = 0, pair_seed: int = 0) -> FeatureSet:
    """The test split, or a fixed random subset of ``test_limit`` samples (the split is sorted
    by digit for audio, so its first samples would not cover every class)."""
    test = features(modality, "test", pair_seed)
    if 0 < test_limit < len(test):
        return test.subset(np.sort(np.random.default_rng(0).permutation(len(test))[:test_limit]))
    return test


def model_config(spec: ModelSpec, settings: TrainSettings) -> dict:
    """What identifies a trained model (its cache key)."""
    return {"model": spec.as_dict(), "training": asdict(settings)}


def save_trained(folder: Path, spec: ModelSpec, model: nn.Module, summary: dict) -> dict:
    """Fill a model cache folder: ``state.pt`` and, for a DNN, its ONNX file; returns the
    training summary with the model's size (the cache keeps it as ``summary.json``)."""
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "state.pt")
    if spec.family == "dnn":
        export_onnx(model, spec.n_features, folder / ONNX_FILE)
    return {**summary, "parameter_count": parameter_count(model), "hidden_width": spec.hidden_width}


def load_trained_multimodal(folder: Path) -> tuple[torch.nn.Module, ModelSpec, dict]:
    """(model in eval mode on the CPU, its spec, its training summary) from a cache folder."""
    folder = Path(folder)
    if not (folder / "state.pt").exists():
        raise DataError(f"{folder} holds no trained multimodal model; train it with snnbench multimodal")
    config = json.loads((folder / CONFIG).read_text())
    spec = ModelSpec(**config["model"])
    model = build_model(spec)
    model.load_state_dict(torch.load(folder / "state.pt", map_location="cpu"))
    return model.eval(), spec, read_summary(folder)


def _requirements(*packages: str) -> list:
    return [f"{p}=={metadata.version(p)}" for p in packages]


def log_trained_model(folder: Path, name: str) -> str:
    """Log a trained model's cache folder as an MLflow model of the active run (once per name) and
    return its model id: the ONNX flavour for a DNN's ``model.onnx``, else the PyTorch flavour (an
    snntorch SNN, from ``state.pt``), with the folder's JSON files.

    MLflow links a run's metrics logged without a model id at the model's step to it, so the model
    stands at the step after its last training epoch (at least 1): per-epoch and final (step 0)
    metrics stay unlinked."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    run_id = mlflow.active_run().info.run_id
    logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
                                         output_format="list")
    if logged:
        return logged[0].model_id
    folder = Path(folder)
    common = {"name": name, "extra_files": [str(p) for p in sorted(folder.glob("*.json"))],
              "step": max(1, len(read_summary(folder).get("history", [])))}
    active = mlflow.get_active_model_id()

    def signature(n_inputs: int, n_outputs: int) -> ModelSignature:
        return ModelSignature(Schema([TensorSpec(np.dtype(np.float32), (-1, n_inputs), "input")]),
                              Schema([TensorSpec(np.dtype(np.float32), (-1, n_outputs), "logits")]))

    if (folder / ONNX_FILE).exists():
        import onnx
        from mlflow import onnx as mlflow_onnx

        model = onnx.load(str(folder / ONNX_FILE))
        n_in, n_out = (v.type.tensor_type.shape.dim[-1].dim_value
                       for v in (model.graph.input[0], model.graph.output[0]))
        info = mlflow_onnx.log_model(model, signature=signature(n_in, n_out), save_as_external_data=False,
                                    pip_requirements=_requirements("onnx", "onnxruntime", "numpy"), **common)
    else:
        from mlflow import pytorch as mlflow_pytorch

        model, spec, _ = load_trained_multimodal(folder)
        pytorch_logger = logging.getLogger("mlflow.pytorch")
        level = pytorch_logger.level
        pytorch_logger.setLevel(logging.ERROR)  # its warning on pickled models: these are our own
        try:
            info = mlflow_pytorch.log_model(model, signature=signature(spec.n_features, N_CLASSES),
                                           pip_requirements=_requirements("torch", "snntorch", "numpy"),
                                           code_paths=[str(Path(__file__).resolve().parents[1])],
                                           serialization_format="pickle", **common)
        finally:
            pytorch_logger.setLevel(level)
    if mlflow.get_active_model_id() != active:
        # logging made it MLflow's active model, to which metrics logged without a model id would be linked
        mlflow.clear_active_model() if active is None else mlflow.set_active_model(model_id=active)
    return info.model_id
