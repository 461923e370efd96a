"""Import nengo_dl on the TensorFlow 2.15 / Keras 2.15 stack.

nengo-dl 3.6.0 imports ``keras.engine`` (moved to ``keras.src.engine`` in Keras 2.13) and looks up
``BatchNormalizationV1/V2`` on ``keras.layers``. This module aliases those names once, before
nengo_dl is imported. Import nengo_dl through :func:`import_nengo_dl`, never directly.
"""

import importlib
import os
import sys

_ALIASED_MODULES = ("engine", "engine.base_layer", "engine.input_layer", "engine.keras_tensor",
                    "engine.node", "engine.training", "engine.functional", "engine.sequential")


def _alias_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ start-up chatter (CUDA plug-ins, TensorRT)
    import keras

    for name in _ALIASED_MODULES:
        target = f"keras.{name}"
        if target in sys.modules:
            continue
        try:
            sys.modules[target] = importlib.import_module(f"keras.src.{name}")
        except ImportError:
            pass
    from keras.src.layers.normalization import batch_normalization, batch_normalization_v1

    if not hasattr(keras.layers, "BatchNormalizationV1"):
        keras.layers.BatchNormalizationV1 = batch_normalization_v1.BatchNormalization
    if not hasattr(keras.layers, "BatchNormalizationV2"):
        keras.layers.BatchNormalizationV2 = batch_normalization.BatchNormalization


def import_nengo_dl():
    """Return the nengo_dl module, with the Keras aliases in place."""
    if "nengo_dl" not in sys.modules:
        _alias_keras()
    return importlib.import_module("nengo_dl")
