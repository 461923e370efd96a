"""Every data set as one type, :class:`Dataset`: train, validation and test splits of flat float32
samples, their sample shape and class count, and checksums; :func:`load_dataset` makes one of a
built-in data set's name or of the path of a user's data (:mod:`snnbench.data.layouts`).

* Built-in: ``mnist`` (images (1, 28, 28)), ``fsdd`` (spectrograms (1, 129, 61)) and
  ``multimodal`` (both concatenated per sample, (8653,)), each split as the code has always split
  it (:func:`snnbench.data.validation_rows`, 'recordings' protocol): a seeded 20% of MNIST's
  training images and 500 of FSDD's 2,700 training recordings held out for validation; the test
  split is the official one. A split is read when first used, so a study never opens MNIST's test
  files.
* A user's data (a path) is read and checked whole when loaded, so bad data stops before anything
  runs. Without its own validation split, a seeded 10% of the training split is held out. Samples:
  ``(N, F)`` are feature vectors, sample shape ``(F,)``; ``(N, H, W)`` are grey images,
  ``(1, H, W)``; 4-D arrays are channels-last ``(N, H, W, C)`` when C (the last axis) is 1, 3 or 4
  and the second axis is not, else channels-first ``(N, C, H, W)`` (ONNX's and torch's layout);
  a ``.npz`` file's ``layout`` key ('NCHW' or 'NHWC') overrides the rule. Samples are flattened
  channel-major, as an ONNX model's (N, C, H, W) input is. uint8 values are pixels, scaled by 1/255
  (as MNIST's are); other numbers are taken as they are (already preprocessed). Labels are
  integers 0..K-1 or one-hot rows.

A data set's ``digest`` identifies its content (its files' checksums, sample shape and classes;
the same for every seed); each split's ``FeatureSet.digest`` is a hash of its samples, what MLflow
logs as the dataset digest (:func:`snnbench.tracking.runs.log_dataset`).
"""

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np

from snnbench.data.fsdd import MANIFEST_SHA256, SpectrogramConfig
from snnbench.data.layouts import ACCEPTED, RawData, read_layout
from snnbench.data.mnist import FILES as MNIST_FILES
from snnbench.data.multimodal import FeatureSet, feature_size, load_features, load_tables, validation_rows, \
    validation_split
from snnbench.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")
BUILT_IN = {"mnist": "image", "fsdd": "audio", "multimodal": "multimodal"}  # name -> modality (the suite's tables')
USER_VALIDATION = 0.1  # the held-out fraction of a user's training split without its own validation split
UNLABELLED = -1  # the label of samples that have none (an SNN Toolbox folder's x_norm)
CHANNELS = (1, 3, 4)  # channel counts of a channels-last image
DATASET_HELP = (f"{', '.join(BUILT_IN)}, or the path of your data: {ACCEPTED}; uint8 values are scaled by 1/255, "
                "other values used as they are")


@dataclass(frozen=True)
class Dataset:
    """A data set: its splits (``train``, ``validation``, ``test``: :class:`FeatureSet` with ``x``
    float32 ``(N, prod(sample_shape))`` and ``y`` int64 ``(N,)``), read when first used."""
    name: str  # a built-in name, or the file (without suffix) or folder name of a user's data
    digest: str  # the content's hash (16 hex digits; module docstring)
    source: str  # the built-in name, or the absolute path read
    sample_shape: tuple  # (C, H, W) of images, (F,) of feature vectors
    classes: int
    modality: str  # image, audio, multimodal (built-in) or features (a user's vectors)
    checksums: dict  # "<name>/<file>" -> checksum of the files read
    read: Callable = field(repr=False, compare=False)  # split name -> FeatureSet
    class_names: tuple = ()  # an image folder's class folders, label order
    _splits: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def split(self, name: str) -> FeatureSet:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        if name not in self._splits:
            self._splits[name] = self.read(name)
        return self._splits[name]

    @property
    def train(self) -> FeatureSet:
        """Training samples: what calibration draws on (validation samples held out)."""
        return self.split("train")

    @property
    def validation(self) -> FeatureSet:
        """The seeded (or given) hold-out that settings are chosen on."""
        return self.split("validation")

    @property
    def test(self) -> FeatureSet:
        """The test samples, read once to report."""
        return self.split("test")

    @property
    def tags(self) -> dict:
        """MLflow tags naming the data set (a run's or a logged dataset's)."""
        return {"dataset": self.name, "dataset.digest": self.digest, "dataset.source": self.source,
                "dataset.sample_shape": "x".join(map(str, self.sample_shape)), "dataset.classes": str(self.classes)}


def content_digest(checksums: dict, sample_shape: tuple, classes: int) -> str:
    text = json.dumps([sorted(checksums.items()), list(sample_shape), classes])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def load_dataset(spec: str, seed: int = 0, validation: float | None = None,
                 image_size: tuple[int, int] | None = None) -> Dataset:
    """The data set ``spec`` names: ``mnist``, ``fsdd``, ``multimodal`` or the path of a user's data
    (module docstring). ``seed`` draws the validation split; ``validation`` replaces the held-out
    fraction (a user's training split without its own; MNIST's images; FSDD's recordings);
    ``image_size`` (height, width) resizes an image folder's images (default: their most common size)."""
    if spec in BUILT_IN:
        if image_size is not None:
            raise ConfigError(f"an image size is for an image folder, not the built-in data set {spec}")
        return built_in(spec, seed, validation)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data set {spec!r} is neither built in ({', '.join(BUILT_IN)}) nor an existing path; "
                        f"give {ACCEPTED}")
    path = path.resolve()
    raw = read_layout(path, image_size)
    name = path.stem if path.is_file() else path.name
    name = f"{name} ({path})" if name in BUILT_IN else name  # never taken for a built-in data set
    return from_raw(name, str(path), raw, seed, USER_VALIDATION if validation is None else validation)


def built_in(spec: str, seed: int, validation: float | None) -> Dataset:
    modality = BUILT_IN[spec]
    fractions = {} if validation is None else {"recording_fraction" if spec == "fsdd" else "fraction": validation}
    if validation is not None:
        validation_split(1, validation)  # checks the fraction now

    @cache
    def train_and_validation() -> tuple[FeatureSet, FeatureSet]:
        tables = load_tables(modality, "train")
        return tuple(tables.features(rows) for rows in validation_rows(tables, "recordings", seed, **fractions))

    def read(split: str) -> FeatureSet:
        return load_features(modality, "test") if split == "test" else train_and_validation()[split == "validation"]

    spectrogram = (1, *SpectrogramConfig().shape)
    shape = {"mnist": (1, 28, 28), "fsdd": spectrogram, "multimodal": (feature_size("multimodal"),)}[spec]
    checksums = {**({f"mnist/{name}": md5 for name, md5 in MNIST_FILES.items()} if spec != "fsdd" else {}),
                 **({"fsdd/recordings": MANIFEST_SHA256} if spec != "mnist" else {})}
    return Dataset(spec, content_digest(checksums, shape, 10), spec, shape, 10, modality, checksums, read)


def from_raw(name: str, source: str, raw: RawData, seed: int, validation: float) -> Dataset:
    """A user's data set of its splits as stored, checked (one-line DataError) and flattened."""
    scaled = {split: x.dtype == np.uint8 for split, x in raw.x.items()}
    if len(set(scaled.values())) > 1:
        raise DataError(f"{source}: {', '.join(raw.names[s] for s, u in scaled.items() if u)} hold uint8 pixels "
                        f"but {', '.join(raw.names[s] for s, u in scaled.items() if not u)} do not; give every split "
                        "the same type")
    x, shapes, y, widths = {}, {}, {}, {}
    for split in raw.x:
        where = f"{source}: {raw.names[split]}"
        x[split], shapes[split] = flat_samples(raw.x[split], raw.layout, where)
        if raw.y[split] is None:
            y[split], widths[split] = np.full(len(x[split]), UNLABELLED, dtype=np.int64), 0
        else:
            y[split], widths[split] = labels(raw.y[split], len(x[split]), where)
    if len(set(shapes.values())) > 1:
        raise DataError(f"{source}: samples differ in shape between splits ("
                        + ", ".join(f"{raw.names[s]} {shape}" for s, shape in shapes.items()) + "); give one shape")
    if "validation" not in x:
        if raw.y["train"] is None:  # unlabelled training samples: nothing to validate on
            held, rest = np.arange(0), np.arange(len(y["train"]))
        else:
            rest, held = validation_split(len(y["train"]), validation, seed)
        x["validation"], y["validation"] = x["train"][held], y["train"][held]
        x["train"], y["train"] = x["train"][rest], y["train"][rest]
    sample_shape = shapes["train"]
    classes = len(raw.class_names) or max(max(widths.values()), 1 + max(int(v.max(initial=-1)) for v in y.values()))
    checksums = {f"{name}/{file}": value for file, value in raw.checksums.items()}
    splits = {split: FeatureSet(x[split], y[split], checksums, {name: source}) for split in SPLITS}
    return Dataset(name, content_digest(checksums, sample_shape, classes), source, sample_shape, classes,
                   "image" if len(sample_shape) == 3 else "features", checksums, splits.__getitem__,
                   tuple(raw.class_names))


def flat_samples(x: np.ndarray, layout: str | None, where: str) -> tuple[np.ndarray, tuple]:
    """Samples as float32 (N, prod(sample shape)), channel-major, and their sample shape."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where} holds {x.dtype} values; give numbers")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{where} has shape {x.shape}; give (N, features), (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if len(x) == 0:
        raise DataError(f"{where} is an empty split; give it samples")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and (layout == "NHWC" or layout is None and x.shape[3] in CHANNELS and x.shape[1] not in CHANNELS):
        x = x.transpose(0, 3, 1, 2)
    flat = (x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)).reshape(len(x), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise DataError(f"{where} has {int(bad.sum())} samples with NaN or infinite values (the first: sample "
                        f"{int(np.flatnonzero(bad)[0])}); replace or drop them")
    return flat, tuple(int(d) for d in x.shape[1:])


def labels(y: np.ndarray, n: int, where: str) -> tuple[np.ndarray, int]:
    """Class indices (int64) of integer labels or one-hot rows, and the one-hot width (0 if none)."""
    width = 0
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.dtype.kind in "biuf":
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"{where}: 2-D labels must be one-hot rows (a single 1 per row, else 0); give one "
                            "integer label per sample or one-hot rows")
        y, width = y.argmax(axis=1), y.shape[1]
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise DataError(f"{where}: labels of shape {y.shape} and type {y.dtype}; give one integer label per sample "
                        "(N,) or one-hot rows (N, classes)")
    if len(y) != n:
        raise DataError(f"{where}: {n} samples but {len(y)} labels; give one label per sample")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise DataError(f"{where}: labels are not all integers; give class indices 0, 1, ...")
    if (y < 0).any():
        raise DataError(f"{where}: negative labels (the first: {y[y < 0][0]:g}); give class indices 0, 1, ...")
    return y.astype(np.int64), width


def check_fits(dataset: Dataset, n_inputs: int | tuple, n_classes: int, calibration_samples: int = 0,
               splits: tuple = SPLITS):
    """One-line DataError unless a model with ``n_inputs`` input values (or that input shape per
    sample) and ``n_classes`` outputs takes the data set: sizes that differ (both shapes named),
    labels of ``splits`` beyond the model's classes, fewer training samples than
    ``calibration_samples``. Reads only ``splits`` (and ``train`` for the calibration count)."""
    model_shape = tuple(n_inputs) if isinstance(n_inputs, (tuple, list)) else (int(n_inputs),)
    values = int(np.prod(dataset.sample_shape))
    if int(np.prod(model_shape)) != values:
        raise DataError(f"the model takes inputs of shape {model_shape} ({int(np.prod(model_shape))} values per "
                        f"sample), but data set {dataset.name}'s samples have shape {dataset.sample_shape} ({values} "
                        "values); give data of the model's input shape or a model of the data's")
    for split in splits:
        y = dataset.split(split).y
        if len(y) and int(y.max()) >= n_classes:
            raise DataError(f"data set {dataset.name}'s {split} split has label {int(y.max())}, but the model has "
                            f"{n_classes} outputs (labels 0-{n_classes - 1}); give a model with an output per class")
    if calibration_samples > len(dataset.train):
        raise DataError(f"{calibration_samples} calibration samples asked for, but data set {dataset.name}'s "
                        f"training split has {len(dataset.train)}; ask for at most {len(dataset.train)}")
