"""The engines, each a :class:`snnbench.evaluation.harness.Model`, built through one registry.

``build(name, artifact, settings)`` builds the engine ``name`` of a trained network (``artifact``)
with its ``settings`` (keyword options of the engine's builder). Each engine module registers its
builder (``@register(name)``, after nengo's ``Builder.register``) and is imported on first use:

* ``ort-dnn`` (:mod:`~snnbench.engines.ort`): a DNN in ONNX Runtime; artifact: an ``.onnx`` file or
  a folder holding ``model.onnx``;
* ``nengo-snn`` (:mod:`~snnbench.engines.nengo`): the converted spiking network on nengo-dl or
  nengo's reference simulator; artifact: a converted model (or its ONNX file / folder);
* ``loihi-emulator`` (:mod:`~snnbench.engines.loihi`): the same network on nengo-loihi's emulator;
* ``snntorch-snn`` (:mod:`~snnbench.engines.pytorch`): the multimodal suite's snntorch SNN, or the
  converted network with snntorch IF neurons (artifact: a converted model);
* ``torch-dnn`` (:mod:`~snnbench.engines.pytorch`): the suite's DNN in PyTorch.

The converted-network engines take ``layers`` (per-layer neuron settings) or, instead,
``calibration_inputs``: training inputs that set them by the calibrated method.
"""

import importlib

from snnbench.errors import ConfigError

MODULES = {"ort-dnn": "ort", "nengo-snn": "nengo", "loihi-emulator": "loihi", "snntorch-snn": "pytorch",
           "torch-dnn": "pytorch"}
_BUILDERS = {}


def register(name: str):
    """Decorator: ``builder(artifact, **settings) -> Model`` builds the engine ``name``."""
    def decorate(builder):
        _BUILDERS[name] = builder
        return builder
    return decorate


def build(name: str, artifact, settings: dict | None = None):
    """The engine ``name`` of ``artifact``, as a harness model."""
    if name not in MODULES:
        raise ConfigError(f"unknown engine {name!r}; use one of {', '.join(MODULES)}")
    importlib.import_module(f"snnbench.engines.{MODULES[name]}")
    return _BUILDERS[name](artifact, **(settings or {}))


def converted_layers(converted, layers=None, calibration_inputs=None, seed: int = 0, dt: float = 0.001):
    """``converted`` loaded, and its per-layer settings: ``layers`` as given, or the calibrated
    method's (snnbench.conversion.calibration) from ``calibration_inputs``."""
    from snnbench.conversion.onnx_io import load_any

    converted = load_any(converted)
    if layers is None:
        from snnbench.conversion.calibration import Calibration, calibrate

        if calibration_inputs is None:
            raise ConfigError("a converted network needs its layers or calibration inputs")
        layers = calibrate(converted, calibration_inputs, Calibration(seed=seed), dt)[0]
    return converted, layers
