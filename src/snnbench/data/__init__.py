"""Datasets: one type for every data set (:class:`Dataset`, :func:`load_dataset`: MNIST, FSDD,
their multimodal pairing or a user's data), the loaders beneath it, and validation splits."""

from snnbench.data.datasets import (BUILT_IN, DATASET_HELP, SPLITS, UNLABELLED, Dataset, check_fits,
                                    load_dataset)
from snnbench.data.fsdd import AudioSet, SpectrogramConfig, load_fsdd
from snnbench.data.mnist import ImageSet, load_mnist
from snnbench.data.multimodal import (MODALITIES, VALIDATIONS, FeatureSet, Rows, Tables, feature_size,
                                      load_features, load_tables, pair_by_label, sample_digest, validation_rows,
                                      validation_split)

__all__ = ["AudioSet", "BUILT_IN", "DATASET_HELP", "Dataset", "FeatureSet", "ImageSet", "MODALITIES", "Rows",
           "SPLITS", "SpectrogramConfig", "Tables", "UNLABELLED", "VALIDATIONS", "check_fits", "feature_size",
           "load_dataset", "load_features", "load_fsdd", "load_mnist", "load_tables", "pair_by_label",
           "sample_digest", "validation_rows", "validation_split"]
