"""Image, audio and fused (image + spoken digit) inputs as flat float32 feature matrices, and
validation splits.

Each MNIST image is paired with a recording of the same digit from the same FSDD split: each
digit's recordings shuffled (seeded) and repeated in turn, so the fused sets keep MNIST's sizes.
A split's data are :class:`Tables` (one row per image, one per recording), a set of samples
:class:`Rows` (each sample's image and / or recording row, and its label), so a training run can
keep the tables on its device and gather batches. :func:`validation_rows` holds out validation
samples by a protocol:

* ``recordings`` (default): a seeded 500 of the 2,700 training recordings are held out, and the
  fused validation images are paired only with them;
* ``speakers``: the held-out recordings are every recording of seeded speakers (1 of 6);
* ``study``: the reference study's, a seeded 20% of the fused samples, whose recordings also occur
  in the training part (each about 22 times): its validation accuracy measures memorised audio.

Images are split alike in every protocol (a seeded 20%); the audio-only set holds out recordings in
``study`` and ``recordings`` alike (500 of 2,700, the study's figure).
"""

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from snnbench.data.fsdd import ARCHIVE_URLS, SpectrogramConfig, load_fsdd
from snnbench.data.mnist import MIRRORS, load_mnist
from snnbench.errors import ConfigError, DataError

MODALITIES = ("image", "audio", "multimodal")
VALIDATIONS = ("recordings", "speakers", "study")


def validation_split(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): a seeded permutation, the last ``fraction`` held out."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val:])


def sample_digest(x: np.ndarray, y: np.ndarray) -> str:
    """A hash of samples themselves: their shape and dtype, features and labels (16 hex digits)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr((x.shape, str(x.dtype))).encode())
    digest.update(np.ascontiguousarray(x).data)
    digest.update(np.ascontiguousarray(y).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class FeatureSet:
    x: np.ndarray  # float32 (N, features); MNIST and FSDD values in [0, 1]
    y: np.ndarray  # int64 (N,)
    checksums: dict  # "<data set>/<file>" -> checksum of the files the samples were read from
    origins: dict = field(default_factory=dict)  # data set name -> where it was read from (not MNIST or FSDD)

    def subset(self, index) -> "FeatureSet":
        return FeatureSet(self.x[index], self.y[index], self.checksums, self.origins)

    @property
    def sources(self) -> dict:
        """Data set name -> where its checksummed files come from, for each data set in the samples."""
        urls = {"mnist": MIRRORS[0], "fsdd": ARCHIVE_URLS[0]}
        known = {name: url for name, url in urls.items() if any(k.startswith(f"{name}/") for k in self.checksums)}
        return {**known, **self.origins}

    @cached_property
    def digest(self) -> str:
        """:func:`sample_digest` of the samples (computed once)."""
        return sample_digest(self.x, self.y)

    def __len__(self):
        return len(self.y)


@dataclass(frozen=True)
class Rows:
    """Samples as rows of a split's :class:`Tables`: image row and / or recording row, label."""
    image: np.ndarray | None      # int64 (N,), or None when the modality has no image
    recording: np.ndarray | None  # int64 (N,), or None when the modality has no audio
    y: np.ndarray                 # int64 (N,)

    def subset(self, index) -> "Rows":
        return Rows(*(None if a is None else a[index] for a in (self.image, self.recording)), self.y[index])

    def __len__(self):
        return len(self.y)


@dataclass(frozen=True)
class Tables:
    """One split's feature rows: images (N, 784) and / or recordings (M, freq x frames)."""
    modality: str
    images: np.ndarray | None
    image_labels: np.ndarray | None
    recordings: np.ndarray | None
    recording_labels: np.ndarray | None
    speakers: tuple | None  # speaker of each recording
    checksums: dict

    def all_rows(self, pair_seed: int = 0) -> Rows:
        """Every sample of the split: each image (paired with a recording when fused), or each recording."""
        if self.modality == "audio":
            return Rows(None, np.arange(len(self.recording_labels)), self.recording_labels)
        images = np.arange(len(self.image_labels))
        recordings = (pair_by_label(self.image_labels, self.recording_labels, pair_seed)
                      if self.modality == "multimodal" else None)
        return Rows(images, recordings, self.image_labels)

    def features(self, rows: Rows) -> FeatureSet:
        """The samples' flat features: image pixels, then spectrogram (fused)."""
        parts = [table[index] for table, index in ((self.images, rows.image), (self.recordings, rows.recording))
                 if index is not None]
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return FeatureSet(x, rows.y, self.checksums)


def pair_by_label(image_labels: np.ndarray, audio_labels: np.ndarray, seed: int) -> np.ndarray:
    """For each image, the index of a recording with the same label (recordings cycled, seeded)."""
    rng = np.random.default_rng(seed)
    pairs = np.empty(len(image_labels), dtype=np.int64)
    for digit in np.unique(image_labels):
        images = np.flatnonzero(image_labels == digit)
        recordings = np.flatnonzero(audio_labels == digit)
        if recordings.size == 0:
            raise DataError(f"no recording of digit {digit} to pair with its images")
        order = rng.permutation(recordings)
        pairs[images] = np.resize(order, images.size)
    return pairs


def load_tables(modality: str, split: str, spectrogram: SpectrogramConfig = SpectrogramConfig()) -> Tables:
    """The feature rows ``modality`` ('image', 'audio' or 'multimodal') draws on in ``split``."""
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    checksums = {}
    images = image_labels = recordings = recording_labels = speakers = None
    if modality in ("image", "multimodal"):
        mnist = load_mnist(split)
        images = mnist.images.reshape(len(mnist.labels), -1).astype(np.float32) / 255.0
        image_labels = mnist.labels
        checksums.update({f"mnist/{k}": v for k, v in mnist.checksums.items()})
    if modality in ("audio", "multimodal"):
        audio = load_fsdd(split, spectrogram)
        recordings = audio.features.reshape(len(audio.labels), -1)
        recording_labels, speakers = audio.labels, audio.speakers
        checksums["fsdd/recordings"] = audio.checksum
    return Tables(modality, images, image_labels, recordings, recording_labels, speakers, checksums)


def load_features(modality: str, split: str, pair_seed: int = 0,
                  spectrogram: SpectrogramConfig = SpectrogramConfig()) -> FeatureSet:
    """Flat features of ``modality`` ('image', 'audio' or 'multimodal') for ``split``."""
    tables = load_tables(modality, split, spectrogram)
    return tables.features(tables.all_rows(pair_seed))


def feature_size(modality: str, spectrogram: SpectrogramConfig = SpectrogramConfig()) -> int:
    audio = int(np.prod(spectrogram.shape))
    return {"image": 784, "audio": audio, "multimodal": 784 + audio}[modality]


def held_out_recordings(tables: Tables, validation: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) recording rows: a seeded ``fraction`` of the recordings, or
    (``speakers``) every recording of ``round(fraction x speakers)`` seeded speakers (at least one)."""
    n = len(tables.recording_labels)
    if validation != "speakers":
        return validation_split(n, fraction, seed)
    speakers = np.asarray(tables.speakers)
    names = np.unique(speakers)
    held = np.random.default_rng(seed).choice(names, max(1, int(round(len(names) * fraction))), replace=False)
    is_held = np.isin(speakers, held)
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def validation_rows(tables: Tables, validation: str, seed: int, pair_seed: int = 0, train_limit: int = 0,
                    fraction: float = 0.2, recording_fraction: float = 500 / 2700) -> tuple[Rows, Rows]:
    """(training, validation) samples of a training split under a validation protocol
    (:data:`VALIDATIONS`; module docstring). ``train_limit`` > 0 first keeps a seeded subset of
    that many images (audio: recordings)."""
    if validation not in VALIDATIONS:
        raise ConfigError(f"unknown validation protocol {validation!r}; use one of {', '.join(VALIDATIONS)}")
    rng = np.random.default_rng(seed)

    def limited(n: int) -> np.ndarray:  # a seeded subset of train_limit of n rows, or all
        return np.sort(rng.permutation(n)[:train_limit]) if 0 < train_limit < n else np.arange(n)

    if tables.modality == "image" or validation == "study" or (tables.modality, validation) == ("audio", "recordings"):
        pool = tables.all_rows(pair_seed)
        pool = pool.subset(limited(len(pool)))
        train, val = validation_split(len(pool), recording_fraction if tables.modality == "audio" else fraction, seed)
        return pool.subset(train), pool.subset(val)
    recordings_train, recordings_val = held_out_recordings(tables, validation, recording_fraction, seed)
    if tables.modality == "audio":  # speakers
        pool = Rows(None, recordings_train, tables.recording_labels[recordings_train])
        return pool.subset(limited(len(pool))), Rows(None, recordings_val, tables.recording_labels[recordings_val])
    images = limited(len(tables.image_labels))
    images_train, images_val = (images[i] for i in validation_split(len(images), fraction, seed))

    def paired(image_rows: np.ndarray, recording_rows: np.ndarray, part: str) -> Rows:
        labels = tables.image_labels[image_rows]
        missing = sorted(set(labels.tolist()) - set(tables.recording_labels[recording_rows].tolist()))
        if missing:
            raise DataError(f"the {part} recordings hold no recording of digit(s) {missing}; "
                                f"use another --seed or --validation study")
        return Rows(image_rows, recording_rows[pair_by_label(labels, tables.recording_labels[recording_rows],
                                                             pair_seed)], labels)

    return paired(images_train, recordings_train, "training"), paired(images_val, recordings_val, "validation")
