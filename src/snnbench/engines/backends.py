"""One trained network, four ways to run it, each as ``predict(images) -> scores`` (for timing).

``build_backend(name, folder, steps, batch_size, settings)`` builds the backend once (sessions,
simulators, graphs; the Nengo simulators by running one batch) and returns a function that runs
one batch. ``folder`` holds the conversion study's cached ``model.onnx``.
"""

from pathlib import Path

import numpy as np
import torch

from snnbench.errors import SnnbenchError

DT = 0.001  # the converted network's simulation step (s)


def set_threads(threads: int, tensorflow: bool = False) -> dict:
    """Use ``threads`` CPU threads in torch and, with ``tensorflow`` (nengo-dl), in TensorFlow
    (before TensorFlow starts its runtime). Returns the thread counts in force (0 = library default)."""
    torch.set_num_threads(threads)
    counts = {"torch_threads": torch.get_num_threads()}
    if tensorflow:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already running in this process (e.g. a test session)
            print(f"throughput: TensorFlow already started; nengo-dl keeps "
                  f"{tf.config.threading.get_intra_op_parallelism_threads() or 'its default'} threads", flush=True)
        counts["tensorflow_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return counts


def model_folder(settings: dict) -> Path:
    from snnbench.training.conversion import trained_conversion_model

    return trained_conversion_model(settings["arch"], epochs=settings["epochs"], seed=settings["seed"],
                                    train_limit=settings["train_limit"] or None)


def _ort(folder: Path, steps: int, batch_size: int, settings: dict):
    from snnbench.engines.runners import OrtRunner

    runner = OrtRunner(folder / "model.onnx", batch_size=batch_size, intra_op_threads=settings["threads"])
    return lambda images: runner.predict(images.reshape(len(images), -1))


def calibrated_layers(folder: Path, settings: dict) -> list:
    """The default conversion (snnbench convert --method calibrated) of the cached network: its
    per-layer neuron settings from MNIST training images."""
    from snnbench.conversion.calibration import Calibration, calibrate, mnist_training_images
    from snnbench.conversion.onnx_io import load_any

    key = (str(folder), settings["seed"])
    if key not in _CALIBRATED:
        x_train = mnist_training_images(settings["seed"])
        _CALIBRATED[key] = calibrate(load_any(folder), x_train, Calibration(seed=settings["seed"]), DT)[0]
    return _CALIBRATED[key]


_CALIBRATED = {}


def _nengo(simulator: str):
    def build(folder: Path, steps: int, batch_size: int, settings: dict):
        from snnbench.engines.runners import NengoRunner, SimConfig

        config = SimConfig(steps=steps, dt=DT, minibatch=batch_size, simulator=simulator, seed=settings["seed"])
        runner = NengoRunner(folder, calibrated_layers(folder, settings), config, counters=False)  # no probes
        predict = lambda images: runner.predict(images.reshape(len(images), -1))  # noqa: E731
        predict(np.zeros((batch_size, runner.model.n_inputs), np.float32))  # builds the simulator
        return predict
    return build


def torch_layer(op) -> torch.nn.Module:
    """A converted linear op (dense, conv or avgpool on flat vectors) as a torch module."""
    if op.kind == "dense":
        layer = torch.nn.Linear(op.size_in, op.size_out)
        layer.weight.data = torch.as_tensor(op.weight)
        layer.bias.data = torch.as_tensor(op.bias)
        return layer
    if op.kind == "conv":
        inner = torch.nn.Conv2d(op.in_shape[0], op.out_shape[0], op.kernel, op.strides, padding=op.padding)
        inner.weight.data = torch.as_tensor(op.weight)
        inner.bias.data = torch.as_tensor(op.bias)
    else:
        inner = torch.nn.AvgPool2d(op.kernel, op.strides)
    return torch.nn.Sequential(torch.nn.Unflatten(1, tuple(op.in_shape)), inner, torch.nn.Flatten())


class ConvertedSnntorch(torch.nn.Module):
    """The calibrated conversion with snntorch IF neurons (no leak, reset by subtraction, threshold 1,
    starting at half the threshold): layer ``i`` integrates ``rate_scale_i * dt`` times its input
    current and passes on ``1 / (rate_scale_i * dt)`` per spike; scores are the output layer's mean
    over ``steps``. Unlike Nengo's IF, a snntorch neuron fires at most once per step."""

    def __init__(self, folder: Path, steps: int, layers: list):
        super().__init__()
        from snnbench.models.spiking import make_neuron
        from snnbench.conversion.onnx_io import load_any

        stages = load_any(folder).stages
        self.layers = torch.nn.ModuleList(torch.nn.Sequential(*map(torch_layer, s.ops)) for s in stages)
        self.neurons = torch.nn.ModuleList(make_neuron("if", "soft") for s in stages[:-1])
        self.scales = torch.nn.ParameterList(  # per neuron: calibration may scale each channel (moves with .to)
            torch.nn.Parameter(torch.as_tensor(p.rate_scale * DT * p.per_neuron(s, "channel_scales", 1.0),
                                               dtype=torch.float32), requires_grad=False)
            for p, s in zip(layers, stages))
        self.steps = steps

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mems = [None] * len(self.neurons)
        total = 0.0
        for _ in range(self.steps):
            h = x
            for i, (neuron, scale) in enumerate(zip(self.neurons, self.scales)):
                current = scale * self.layers[i](h)
                if mems[i] is None:
                    mems[i] = torch.full_like(current, 0.5)
                spikes, mems[i] = neuron(current, mems[i])
                h = spikes / scale
            total = total + self.layers[-1](h)
        return total / self.steps


def _snntorch(folder: Path, steps: int, batch_size: int, settings: dict):
    from snnbench.device import resolve_device

    device = resolve_device(settings["device"])
    model = ConvertedSnntorch(folder, steps, calibrated_layers(folder, settings)).to(device).eval()

    def predict(images: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(images.reshape(len(images), -1), device=device)
        return model(x).cpu().numpy()  # .cpu() waits for the device
    return predict


BUILDERS = {"ort": _ort, "nengo_dl": _nengo("nengo_dl"), "nengo": _nengo("nengo"), "snntorch": _snntorch}


def build_backend(name: str, folder: Path, steps: int, batch_size: int, settings: dict):
    if name not in BUILDERS:
        raise SnnbenchError(f"unknown backend {name!r}; use one of {', '.join(BUILDERS)}")
    return BUILDERS[name](Path(folder), steps, batch_size, settings)
