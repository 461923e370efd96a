"""Image, audio and fused (image + spoken digit) inputs as flat float32 feature matrices.

Each MNIST image is paired with a spoken recording of the same digit from the same FSDD split.
Recordings of each digit are shuffled (seeded) and repeated in turn until every image of that
digit has one, so the fused sets keep MNIST's 60,000 / 10,000 sizes.
"""

from dataclasses import dataclass

import numpy as np

from snnbench.data.fsdd import SpectrogramConfig, load_fsdd
from snnbench.data.mnist import load_mnist
from snnbench.errors import SnnbenchError

MODALITIES = ("image", "audio", "multimodal")


@dataclass(frozen=True)
class FeatureSet:
    x: np.ndarray  # float32 (N, features), values in [0, 1]
    y: np.ndarray  # int64 (N,)
    checksums: dict

    def subset(self, index) -> "FeatureSet":
        return FeatureSet(self.x[index], self.y[index], self.checksums)

    def __len__(self):
        return len(self.y)


def pair_by_label(image_labels: np.ndarray, audio_labels: np.ndarray, seed: int) -> np.ndarray:
    """For each image, the index of a recording with the same label (recordings cycled, seeded)."""
    rng = np.random.default_rng(seed)
    pairs = np.empty(len(image_labels), dtype=np.int64)
    for digit in np.unique(image_labels):
        images = np.flatnonzero(image_labels == digit)
        recordings = np.flatnonzero(audio_labels == digit)
        if recordings.size == 0:
            raise SnnbenchError(f"no recording of digit {digit} to pair with its images")
        order = rng.permutation(recordings)
        pairs[images] = np.resize(order, images.size)
    return pairs


def load_features(modality: str, split: str, pair_seed: int = 0,
                  spectrogram: SpectrogramConfig = SpectrogramConfig()) -> FeatureSet:
    """Flat features of ``modality`` ('image', 'audio' or 'multimodal') for ``split``."""
    if modality not in MODALITIES:
        raise SnnbenchError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    checksums = {}
    if modality in ("image", "multimodal"):
        images = load_mnist(split)
        x_image = images.images.reshape(len(images.labels), -1).astype(np.float32) / 255.0
        checksums.update({f"mnist/{k}": v for k, v in images.checksums.items()})
    if modality in ("audio", "multimodal"):
        audio = load_fsdd(split, spectrogram)
        x_audio = audio.features.reshape(len(audio.labels), -1)
        checksums["fsdd/recordings"] = audio.checksum
    if modality == "image":
        return FeatureSet(x_image, images.labels, checksums)
    if modality == "audio":
        return FeatureSet(x_audio, audio.labels, checksums)
    pairs = pair_by_label(images.labels, audio.labels, pair_seed)
    fused = np.concatenate([x_image, x_audio[pairs]], axis=1)
    return FeatureSet(fused, images.labels, checksums)


def feature_size(modality: str, spectrogram: SpectrogramConfig = SpectrogramConfig()) -> int:
    audio = int(np.prod(spectrogram.shape))
    return {"image": 784, "audio": audio, "multimodal": 784 + audio}[modality]
