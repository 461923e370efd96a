"""``snnbench convert``: DNN -> ONNX -> spiking Nengo network, compared on the MNIST test set.

Trains the conversion study's MLP or CNN (or takes ``--onnx-model``), extracts its layers,
builds the Nengo network with the given neuron settings and evaluates both: accuracy (and
the SNN's accuracy for each step count of ``--steps-list``), latency and throughput, firing
rates, synaptic operations (SNN accumulates vs DNN MACs), and how exactly the rate-mode
network (relu-rate neurons) reproduces the ONNX Runtime logits.
"""

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from snnbench.bench.common import add_common, auto, int_list, positive, require
from snnbench.errors import SnnbenchError

# The reference conversion keeps the ONNX weights and biases (gain 1, rate scale 1); the
# default rate scale 5 brings the MLP within 0.1 points at 30 steps (1.3 at 10; full test set).
DEFAULT_RATE_SCALE = 5.0
PROFILE_TEST_LIMIT = {"quick": 1000, "full": 0}
PROFILE_STEPS_LIST = {"quick": [5, 10, 20, 30], "full": [1, 2, 3, 5, 10, 15, 20, 30, 50, 100]}
EQUIVALENCE_IMAGES = 200
LATENCY_IMAGES = 20


def synapse_value(text: str):
    if text.strip().lower() in ("none", "0", ""):
        return None
    value = positive(float)(text)
    return value


def add_arguments(parser: argparse.ArgumentParser, command: str):
    from snnbench.nengo_net import NEURONS, READOUTS, SIMULATORS

    add_common(parser, device=False)
    model = parser.add_argument_group("DNN")
    model.add_argument("--arch", choices=("mlp", "cnn"), default="mlp", help="network to train")
    model.add_argument("--epochs", type=int, default=3, help="training epochs of the DNN (reference: 3)")
    model.add_argument("--lr", type=positive(float), default=2e-4, help="Adam learning rate (reference: 2e-4)")
    model.add_argument("--batch-size", type=positive(int), default=100, help="training batch size")
    model.add_argument("--train-limit", type=int, default=0, help="first N training images, 0 = all 60,000")
    model.add_argument("--onnx-model", default="", help="convert this .onnx file instead of training")
    snn = parser.add_argument_group("SNN (per hidden layer; --params-json overrides)")
    snn.add_argument("--neuron", choices=NEURONS, default="lif",
                     help="lif, if (spiking rectified linear), or their rate versions lif-rate, relu-rate")
    snn.add_argument("--gain", type=float, default=1.0, help="multiplies the weights onto the neurons")
    snn.add_argument("--bias-scale", type=float, default=1.0, help="bias = bias_scale * ONNX bias + bias_offset")
    snn.add_argument("--bias-offset", type=float, default=0.0, help="added to every neuron's bias current")
    snn.add_argument("--rate-scale", type=positive(float), default=DEFAULT_RATE_SCALE,
                     help="firing-rate scale: inputs x scale, outputs / scale (1 = the reference conversion)")
    snn.add_argument("--synapse", type=synapse_value, default=None,
                     help="output synapse time constant (s), or none")
    snn.add_argument("--tau-rc", type=positive(float), default=0.02, help="LIF membrane time constant (s)")
    snn.add_argument("--tau-ref", type=float, default=0.002, help="refractory period (s) of LIF / IF neurons")
    snn.add_argument("--params-json", default="",
                     help='per-layer settings {"layers": [{"gain": ..}, ..], "sim": {"steps": ..}} '
                          "(written by `snnbench tune`); CLI values fill keys it leaves out")
    snn.add_argument("--study-name", default="",
                     help="use the best setting of this `snnbench tune` study (instead of --params-json)")
    snn.add_argument("--storage", default="sqlite:///optuna.db", help="the study's Optuna storage")
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--steps", type=positive(int), default=30, help="time steps per image")
    sim.add_argument("--steps-list", type=auto(int_list), default=None,
                     help="step counts of the accuracy curve (auto: 5,10,20,30 quick; 1..100 full)")
    sim.add_argument("--dt", type=positive(float), default=0.001, help="simulation time step (s)")
    sim.add_argument("--readout", choices=READOUTS, default="mean",
                     help="logits of the last step, or the mean over the second half of the steps")
    sim.add_argument("--minibatch", type=positive(int), default=100, help="nengo-dl minibatch size")
    sim.add_argument("--simulator", choices=SIMULATORS, default="nengo_dl",
                     help="nengo_dl (batched, TensorFlow) or nengo (the reference simulator, slow)")
    sim.add_argument("--test-limit", type=auto(int), default=None,
                     help="first N test images, 0 = all (auto: 1000 quick, all 10,000 full)")


# --------------------------------------------------------------------------- settings

def resolve(args) -> dict:
    """Checked settings (everything that can be wrong fails here, before a run is opened)."""
    from snnbench.nengo_net import LayerParams, SimConfig, load_params, parse_params

    require(args.epochs >= 0 and args.train_limit >= 0, "--epochs and --train-limit must be >= 0")
    test_limit = PROFILE_TEST_LIMIT[args.profile] if args.test_limit is None else args.test_limit
    require(test_limit >= 0, "--test-limit must be >= 0 (0 = all)")
    steps_list = PROFILE_STEPS_LIST[args.profile] if args.steps_list is None else args.steps_list
    require(bool(steps_list) and min(steps_list) >= 1, "--steps-list needs step counts >= 1")
    layer = LayerParams(args.neuron, args.gain, args.bias_scale, args.bias_offset, args.rate_scale,
                        args.synapse, args.tau_rc, args.tau_ref)
    sim = SimConfig(args.steps, args.dt, args.readout, args.minibatch, args.simulator, args.seed)
    layers = [layer]
    require(not (args.params_json and args.study_name), "give --params-json or --study-name, not both")
    if args.params_json or args.study_name:
        if args.study_name:
            from snnbench.tuning import best_params_from_study

            source = f"study {args.study_name}"
            layers, overrides = parse_params(best_params_from_study(args.study_name, args.storage), source, layer)
        else:
            source = args.params_json
            layers, overrides = load_params(args.params_json, defaults=layer)
        try:
            sim = replace(sim, **overrides)
        except TypeError as exc:
            raise SnnbenchError(f"{source}: bad 'sim' settings ({exc})") from None
    if args.onnx_model:
        require(Path(args.onnx_model).is_file(), f"--onnx-model {args.onnx_model} not found; give a .onnx file")
    return {"test_limit": test_limit, "steps_list": sorted(set(steps_list)), "layers": layers, "sim": sim}


def model_path(args) -> Path:
    """The ONNX file: the given one, or the trained (cached) model's (beside its metrics.json)."""
    if args.onnx_model:
        return Path(args.onnx_model)
    from snnbench.models.conversion import trained_conversion_model

    return trained_conversion_model(args.arch, args.epochs, args.lr, args.batch_size, args.seed,
                                    args.train_limit or None) / "model.onnx"


# --------------------------------------------------------------------------- measuring

def _timed(predict, x):
    started = time.perf_counter()
    out = predict(x)
    return out, time.perf_counter() - started


def _latency_ms(predict, x) -> float:
    """Mean time of one-image predictions (after one warm-up call)."""
    predict(x[:1])
    started = time.perf_counter()
    for i in range(len(x)):
        predict(x[i: i + 1])
    return 1000 * (time.perf_counter() - started) / len(x)


def evaluate_dnn(onnx_path: Path, x, y) -> dict:
    from snnbench.runners import OrtRunner
    from snnbench.training import accuracy

    runner = OrtRunner(onnx_path, batch_size=1000)
    runner.predict(x[:10])
    logits, seconds = _timed(runner.predict, x)
    single = OrtRunner(onnx_path, batch_size=1)
    return {"logits": logits, "accuracy": accuracy(logits, y), "throughput_ips": len(x) / seconds,
            "latency_ms": _latency_ms(single.predict, x[:LATENCY_IMAGES * 5])}


def evaluate_snn(converted, settings: dict, x, y) -> dict:
    """Accuracy at ``sim.steps`` and along the curve, timing, activity."""
    from snnbench.runners import NengoRunner
    from snnbench.training import accuracy

    sim, layers = settings["sim"], settings["layers"]
    curve_steps = [s for s in settings["steps_list"] if s <= sim.steps]
    with NengoRunner(converted, layers, sim) as runner:
        runner.predict(x[:1])  # builds the simulator (and traces the TF graph) before timing
        logits = runner.predict_curve(x, curve_steps + [sim.steps])
        seconds, stats = runner.last_seconds, runner.last_stats
    longer = [s for s in settings["steps_list"] if s > sim.steps]
    if longer:
        with NengoRunner(converted, layers, replace(sim, steps=max(longer))) as runner:
            logits.update(runner.predict_curve(x, longer))
    with NengoRunner(converted, layers, replace(sim, minibatch=1), counters=False) as single:
        latency = _latency_ms(single.predict, x[:LATENCY_IMAGES])
    curve = {s: accuracy(logits[s], y) for s in settings["steps_list"]}
    return {"logits": logits[sim.steps], "accuracy": accuracy(logits[sim.steps], y), "curve": curve,
            "throughput_ips": len(x) / seconds, "latency_ms": latency, "stats": stats}


def rate_equivalence(converted, onnx_path: Path, x, sim) -> float:
    """Max |logit difference| between the relu-rate network and ONNX Runtime on real images."""
    from snnbench.nengo_net import LayerParams
    from snnbench.runners import NengoRunner, OrtRunner

    reference = OrtRunner(onnx_path).predict(x)
    exact = replace(sim, steps=2, readout="last", minibatch=min(sim.minibatch, len(x)))
    with NengoRunner(converted, LayerParams("relu-rate"), exact, counters=False) as runner:
        return float(np.abs(runner.predict(x) - reference).max())


# --------------------------------------------------------------------------- artifacts

def confusion(labels, logits, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, logits.argmax(axis=1)), 1)
    return matrix


def _plot_confusion(matrix, title: str, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                color="white" if v > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(10), yticks=range(10))
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_curve(curve: dict, dnn_accuracy: float, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    steps = sorted(curve)
    ax.plot(steps, [100 * curve[s] for s in steps], "o-", label="SNN (Nengo)")
    ax.axhline(100 * dnn_accuracy, color="gray", ls="--", label="DNN (ONNX Runtime)")
    ax.set(xlabel="time steps", ylabel="test accuracy (%)", title="Accuracy vs simulation time steps")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_artifacts(onnx_path: Path, converted, settings: dict, dnn: dict, snn: dict, y):
    import mlflow
    import mlflow.onnx
    import onnx
    import onnxruntime

    from snnbench import onnx_io
    from snnbench.nengo_net import save_params

    mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", save_as_external_data=False,
                          pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_io.save(converted, tmp / "snn")
        save_params(tmp / "snn" / "params.json", settings["layers"], asdict(settings["sim"]))
        mlflow.log_artifacts(str(tmp / "snn"), "snn")
        matrices = {"dnn": confusion(y, dnn["logits"]), "snn": confusion(y, snn["logits"])}
        for name, matrix in matrices.items():
            _plot_confusion(matrix, f"{name.upper()} confusion matrix", tmp / f"confusion_{name}.png")
            mlflow.log_artifact(str(tmp / f"confusion_{name}.png"), "plots")
        mlflow.log_dict({k: v.tolist() for k, v in matrices.items()}, "confusion_matrices.json")
        _plot_curve(snn["curve"], dnn["accuracy"], tmp / "accuracy_vs_steps.png")
        mlflow.log_artifact(str(tmp / "accuracy_vs_steps.png"), "plots")
    mlflow.log_dict({str(k): v for k, v in snn["curve"].items()}, "accuracy_vs_steps.json")


# --------------------------------------------------------------------------- the command

def run(args):
    import mlflow

    from snnbench import onnx_io
    from snnbench.data import load_features
    from snnbench.tracking import benchmark_run

    settings = resolve(args)
    converted = onnx_io.extract(args.onnx_model) if args.onnx_model else None  # checks the file first
    test = load_features("image", "test")
    if settings["test_limit"]:
        test = test.subset(np.arange(min(settings["test_limit"], len(test))))
    if converted is not None:
        require(converted.n_inputs == test.x.shape[1],
                f"--onnx-model takes {converted.n_inputs} inputs but MNIST images have {test.x.shape[1]}")
    params = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    params.update(test_images=len(test), steps_list=settings["steps_list"],
                  layers=[asdict(p) for p in settings["layers"]], sim=asdict(settings["sim"]))
    with benchmark_run("convert", params, data_checksums=test.checksums):
        onnx_path = model_path(args)
        converted = converted or onnx_io.extract(onnx_path)
        if not args.onnx_model:
            trained = json.loads((onnx_path.parent / "metrics.json").read_text())
            mlflow.log_metrics({"torch_test_accuracy": trained["torch_test_accuracy"],
                                "train_seconds": trained["train_seconds"]})
        dnn = evaluate_dnn(onnx_path, test.x, test.y)
        snn = evaluate_snn(converted, settings, test.x, test.y)
        equivalence = rate_equivalence(converted, onnx_path, test.x[:EQUIVALENCE_IMAGES], settings["sim"])
        log_metrics(converted, dnn, snn, equivalence, settings)
        log_artifacts(onnx_path, converted, settings, dnn, snn, test.y)
        print(f"convert: DNN {100 * dnn['accuracy']:.2f}%  SNN {100 * snn['accuracy']:.2f}% "
              f"({settings['sim'].steps} steps)  loss {100 * (dnn['accuracy'] - snn['accuracy']):.2f} pp  "
              f"rate-mode max |err| {equivalence:.2e}")


def log_metrics(converted, dnn: dict, snn: dict, equivalence: float, settings: dict):
    import mlflow

    macs = converted.macs()
    stats = snn["stats"]
    metrics = {"dnn_accuracy": dnn["accuracy"], "snn_accuracy": snn["accuracy"],
               "conversion_loss_pp": 100 * (dnn["accuracy"] - snn["accuracy"]),
               "dnn_throughput_ips": dnn["throughput_ips"], "snn_throughput_ips": snn["throughput_ips"],
               "dnn_latency_ms": dnn["latency_ms"], "snn_latency_ms": snn["latency_ms"],
               "dnn_macs_per_sample": macs, "rate_equivalence_max_abs_err": equivalence}
    metrics.update({f"snn_{k}": v for k, v in stats.items()})
    if stats and macs:
        metrics["snn_synaptic_ops_vs_dnn_macs"] = stats["synaptic_ops_per_sample"] / macs
        metrics["snn_acs_vs_dnn_macs"] = stats["synaptic_acs_per_sample"] / macs
    mlflow.log_metrics(metrics)
    for steps, acc in sorted(snn["curve"].items()):
        mlflow.log_metric("accuracy_at_steps", acc, step=steps)
