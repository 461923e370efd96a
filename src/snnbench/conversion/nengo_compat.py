"""Import nengo_dl on the TensorFlow 2.15 / Keras 2.15 stack, quietly (always through
:func:`import_nengo_dl`).

nengo-dl 3.6.0 imports ``keras.engine`` (``keras.src.engine`` since Keras 2.13) and looks up
``BatchNormalizationV1/V2`` on ``keras.layers``: those names are aliased first. Unless verbose
(``SNNBENCH_VERBOSE=1``, ``snnbench COMMAND --verbose``), TensorFlow's C++ start-up messages (CUDA
plug-ins, TensorRT) and nengo-dl's "No GPU support" / untested-version warnings are hidden.
"""

import contextlib
import importlib
import importlib.abc
import os
import sys
import warnings

VERBOSE_ENV = "SNNBENCH_VERBOSE"
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
NENGO_DL_WARNINGS = ("No GPU support detected", "This version of NengoDL has not been tested")

_ALIASED_MODULES = ("engine", "engine.base_layer", "engine.input_layer", "engine.keras_tensor",
                    "engine.node", "engine.training", "engine.functional", "engine.sequential")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def silence_tensorflow():
    """Unless verbose: TensorFlow's C++ log at FATAL only (read when TensorFlow loads, so call
    this first) and nengo-dl's start-up warnings filtered. A level the user set is kept."""
    if verbose():
        return
    os.environ.setdefault(TF_LOG_ENV, "3")
    for message in NENGO_DL_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


def _alias_keras():
    import keras

    for name in _ALIASED_MODULES:
        if f"keras.{name}" not in sys.modules:
            with contextlib.suppress(ImportError):
                sys.modules[f"keras.{name}"] = importlib.import_module(f"keras.src.{name}")
    from keras.src.layers.normalization import batch_normalization, batch_normalization_v1

    for version, module in (("V1", batch_normalization_v1), ("V2", batch_normalization)):
        if not hasattr(keras.layers, f"BatchNormalization{version}"):
            setattr(keras.layers, f"BatchNormalization{version}", module.BatchNormalization)


class _KeepTfLogLevel(importlib.abc.MetaPathFinder):
    """nengo_dl's ``__init__`` sets TF_CPP_MIN_LOG_LEVEL=1, then its submodules probe for a GPU
    in a TensorFlow subprocess: each of its submodule imports puts the chosen level back first."""

    def __init__(self, level: str):
        self.level = level

    def find_spec(self, name, path=None, target=None):
        if name.startswith("nengo_dl.") and os.environ.get(TF_LOG_ENV) != self.level:
            os.environ[TF_LOG_ENV] = self.level
        return None  # the usual finders import it


def import_nengo_dl():
    """Return the nengo_dl module, with the Keras aliases in place."""
    if "nengo_dl" not in sys.modules:
        silence_tensorflow()
        _alias_keras()
        level = os.environ.get(TF_LOG_ENV)
        keeper = _KeepTfLogLevel(level) if level is not None else None
        if keeper:
            sys.meta_path.insert(0, keeper)
        try:
            importlib.import_module("nengo_dl")
        finally:
            if keeper:
                sys.meta_path.remove(keeper)
                os.environ[TF_LOG_ENV] = level
    return importlib.import_module("nengo_dl")
