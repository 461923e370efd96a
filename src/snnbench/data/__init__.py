"""Datasets: MNIST, FSDD spectrograms, their multimodal pairing, and validation splits."""

from snnbench.data.fsdd import AudioSet, SpectrogramConfig, load_fsdd
from snnbench.data.mnist import ImageSet, load_mnist
from snnbench.data.multimodal import MODALITIES, FeatureSet, feature_size, load_features, pair_by_label
from snnbench.data.splits import validation_split

__all__ = ["AudioSet", "FeatureSet", "ImageSet", "MODALITIES", "SpectrogramConfig", "feature_size",
           "load_features", "load_fsdd", "load_mnist", "pair_by_label", "validation_split"]
