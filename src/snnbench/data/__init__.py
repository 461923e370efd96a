"""Datasets: MNIST, FSDD spectrograms, their multimodal pairing, and validation splits."""

from snnbench.data.fsdd import AudioSet, SpectrogramConfig, load_fsdd
from snnbench.data.mnist import ImageSet, load_mnist
from snnbench.data.multimodal import (MODALITIES, VALIDATIONS, FeatureSet, Rows, Tables, feature_size,
                                      load_features, load_tables, pair_by_label, validation_rows, validation_split)

__all__ = ["AudioSet", "FeatureSet", "ImageSet", "MODALITIES", "Rows", "SpectrogramConfig", "Tables", "VALIDATIONS",
           "feature_size", "load_features", "load_fsdd", "load_mnist", "load_tables", "pair_by_label",
           "validation_rows", "validation_split"]
