"""The engines, each a :class:`snnbench.evaluation.harness.Model`, built by ``build(name, artifact,
settings)``: engine ``name`` of a trained network ``artifact``, ``settings`` being keyword options of
its builder. Each module registers its builders (``@register(name)``) and is imported on first use:

* ``ort-dnn`` (:mod:`~snnbench.engines.ort`): a DNN in ONNX Runtime (an ``.onnx`` file or a folder
  holding ``model.onnx``);
* ``nengo-snn`` (:mod:`~snnbench.engines.nengo`), ``loihi-emulator`` (:mod:`~snnbench.engines.loihi`):
  the converted spiking network (a converted model, or its ONNX file / folder) on nengo-dl or nengo,
  or on nengo-loihi's emulator;
* ``snntorch-snn``, ``torch-dnn`` (:mod:`~snnbench.engines.pytorch`): the multimodal suite's snntorch
  SNN (or the converted network with snntorch IF neurons) and its DNN.

The converted-network engines take ``layers`` (per-layer neuron settings) or ``calibration_inputs``
(training inputs that set them by the calibrated method).
"""

import importlib

from snnbench.errors import ConfigError

# the engines' names (a result row's engine column, a sweep's --families)
ORT_DNN, NENGO_SNN, LOIHI_EMULATOR, SNNTORCH_SNN, TORCH_DNN = (
    "ort-dnn", "nengo-snn", "loihi-emulator", "snntorch-snn", "torch-dnn")
SUITE = {"dnn": TORCH_DNN, "snn": SNNTORCH_SNN}  # the engine of each family of the multimodal suite
MODULES = {ORT_DNN: "ort", NENGO_SNN: "nengo", LOIHI_EMULATOR: "loihi", SNNTORCH_SNN: "pytorch", TORCH_DNN: "pytorch"}
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
    """``converted`` loaded, and ``layers``, or else the calibrated method's from ``calibration_inputs``."""
    from snnbench.conversion.converted_files import load_any

    converted = load_any(converted)
    if layers is None:
        from snnbench.conversion.calibration import Calibration, calibrate

        if calibration_inputs is None:
            raise ConfigError("a converted network needs its layers or calibration inputs")
        layers = calibrate(converted, calibration_inputs, Calibration(seed=seed), dt)[0]
    return converted, layers
