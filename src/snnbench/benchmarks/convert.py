"""``snnbench convert``: DNN -> ONNX -> spiking Nengo network, compared on the MNIST test set
(measured by snnbench.benchmarks.convert_eval). The trained (or ``--onnx-model``) DNN's spiking
neurons are set by a conversion method (``--method``, snnbench.conversion.calibration):

* ``reference``: the reference study's conversion (LIF, gain 1, the ONNX biases, rate scale 1);
* ``calibrated``: IF neurons, each layer's rate scale from a percentile of its activations on
  MNIST training images (never test images); ``corrected``: calibrated, then each layer's
  expected error taken out for each step count (snnbench.conversion.correction);
* ``tuned``: the best setting of a ``snnbench tune`` study (``--study-name``) or a settings file
  (``--params-json``), chosen on validation images;
* ``auto`` (default): tuned where a setting is given, else corrected where it applies (IF
  neurons, no output synapse, the mean readout), else calibrated; the run logs the method that
  ran and why (``method``, ``method_reason``).

The per-layer setting used is logged (``layers`` param; ``snn/params.json``, with where it came
from); the MNIST test set is read only to score it.
"""

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mlflow
import numpy as np

from snnbench.benchmarks import convert_eval as measure
from snnbench.benchmarks.options import COMMON_NO_DEVICE, from_profile, option_params, recipe, require
from snnbench.config import (Take, auto, choice, command_options, from_args, int_list, option, positive,
                             positive_or_none)
from snnbench.conversion import onnx_ops
from snnbench.conversion.onnx_prepare import ModelInput, PreparedModel, prepared_copy
from snnbench.conversion.calibration import (METHODS, RATE_CHOICES, SCALES, Calibration, calibrated_document,
                                             reference_layers)
from snnbench.conversion.nengo_net import (IF_NEURONS, LayerParams, SimConfig, load_params, params_document,
                                           parse_params)
from snnbench.data import DATASET_HELP, Dataset, FeatureSet, check_fits, load_dataset
from snnbench.errors import ConfigError
from snnbench.evaluation.harness import log_result_table
from snnbench.models.conversion import ARCHS
from snnbench.models.export import ONNX_FILE, onnx_file
from snnbench.tracking.references import local_copy
from snnbench.tracking import summary as run_summary
from snnbench.tracking.runs import benchmark_run
from snnbench.training.cache import read_summary
from snnbench.training.conversion import trained_conversion_model
from snnbench.training.recipes import Recipe
from snnbench.tuning import best_params_from_study

PROFILES = {"quick": dict(test_limit=1000, steps_list=[4, 8, 16, 32]),
            "full": dict(test_limit=0, steps_list=[1, 2, 4, 8, 16, 32, 64, 100])}
EQUIVALENCE_IMAGES = 200
AGREEMENT_SAMPLES = 500  # test samples on which the normalised graph is checked against the user's file
CALIBRATION_OPTIONS = ("calibration_samples", "percentile", "target_rate", "neuron", "initial_voltage", "scales",
                       "rates")
CALIBRATED_METHODS = ("calibrated", "corrected")  # the methods that calibrate on training images
TUNED_OPTIONS = ("params_json", "study_name", "storage")
AUTO_CORRECTED_REASON = ("auto: error correction applies (IF neurons, no output synapse, the mean readout); on deep "
                         "batch-normalised CNNs (examples/deep_cnns.py, 1,000 MNIST test images) calibration alone "
                         "loses 17-88 points at 8 steps and 1-74 at 32, the correction at most 0.9")


DNN, SNN, SIM, WHERE = "DNN", "SNN: the conversion method", "simulation", "where it runs"


@dataclass(frozen=True)
class ConversionOptions:
    """convert's own options (besides the recipe's, the calibration's and the simulation's)."""
    onnx_model: str = option("", "convert your ONNX classifier (a file from any exporter, or a models:/ or runs:/ "
                                 "reference) instead of training; see --output and --input-*", group=DNN)
    dataset: str = option("mnist", "the test, calibration and validation data: " + DATASET_HELP, group=DNN)
    maxpool: str = option("exact", "MaxPool: exact (a tree of pairwise maxes as extra ReLU populations; the rate-mode "
                                   "network stays exact) or average (swapped for average pooling: approximate)",
                          choices=onnx_ops.MAXPOOL_ROUTES, group=DNN)
    method: str = option("auto", "auto: tuned where --params-json or --study-name is given, else corrected where it "
                                 "applies (IF neurons, no output synapse, the mean readout), else calibrated (the run "
                                 "logs which ran and why: method, method_reason); reference: the study's conversion "
                                 "(LIF, gain 1, ONNX biases, rate scale 1); calibrated: IF neurons, each layer's rate "
                                 "scale from its activations on training images; corrected: calibrated, then each "
                                 "layer's mean error taken out for each step count (on training images); tuned: the "
                                 "best setting of a `snnbench tune` study (--study-name) or --params-json",
                         choices=("auto",) + METHODS, group=SNN)
    scales: str | None = option(None, "calibrated / corrected: a rate scale per output channel (per neuron of a dense "
                                      "layer) or one per layer (default: channel for corrected, layer for "
                                      "calibrated)", auto(choice(SCALES)), group=SNN)
    rates: str | None = option(None, "calibrated / corrected: uniform (every layer at --target-rate), balanced (the "
                                     "same expected spikes shared out between the layers, each layer's rate scale "
                                     "times A**(-1/3) for its expected spikes A), or, corrected only, validated: per "
                                     "step count the one of the two that scores better on validation images "
                                     "(default, or auto: validated for corrected, uniform for calibrated)",
                               auto(choice(RATE_CHOICES)), group=SNN)
    synapse: float | None = option(None, "reference / calibrated: output synapse time constant (s), or none",
                                   positive_or_none, group=SNN)
    tau_rc: float = option(0.02, "reference / calibrated lif: LIF membrane time constant (s)", positive(float),
                           group=SNN)
    tau_ref: float = option(0.002, "reference: LIF refractory period (s) (calibrated lif has none)", float, group=SNN)
    params_json: str = option("", 'tuned: per-layer settings {"layers": [{"gain": ..}, ..], "sim": {"steps": ..}} '
                                  "(written by `snnbench tune --best-params-out`)", group=SNN)
    study_name: str = option("", "tuned: use the best setting of this `snnbench tune` study (instead of "
                                 "--params-json)", group=SNN)
    storage: str = option("sqlite:///optuna.db", "tuned: the study's Optuna storage", group=SNN)
    steps_list: list | None = option(None, "step counts of the accuracy curve (auto: 4,8,16,32 quick; 1..100 full)",
                                     auto(int_list), group=SIM)
    test_limit: int | None = option(None, "first N test images, 0 = all (auto: 1000 quick, all 10,000 full)",
                                    auto(int), group=SIM)
    target: str = option("nengo-dl", "nengo-loihi: also run the SNN on nengo-loihi's Loihi emulator (fixed-point "
                                     "weights, Loihi's non-leaky neuron, core limits)",
                         choices=("nengo-dl", "nengo-loihi"), group=WHERE)
    loihi_warmup: int | None = option(None, "nengo-loihi: steps before the readout window (auto: one per on-chip "
                                            "layer)", auto(int), group=WHERE)
    loihi_test_limit: int = option(0, "nengo-loihi: first N of the test images on the emulator, 0 = all of them",
                                   int, group=WHERE)
    nir_out: str = option("", "write the SNN as a NIR graph to this file (logged too)", group=WHERE)


Options = command_options(
    "ConvertOptions", COMMON_NO_DEVICE,
    *recipe(ARCHS, "network to train: the reference MLP, a small CNN, or a ResNet-style CNN (MaxPool, residual Add, "
                   "Concat; image-shaped input)", group=DNN),
    ConversionOptions, ModelInput, Take(Calibration, group=SNN), Take(SimConfig, group=SIM, defaults={"steps": 8}),
    doc="convert's settings")
OPTIONS = {"convert": Options}


def resolve_method(options: Options) -> tuple[str, str]:
    """The conversion method that runs and why: ``--method`` as given, or for ``auto`` (the default)
    ``tuned`` where a tuned setting is given, else ``corrected`` where error correction applies, else
    ``calibrated``."""
    if options.method != "auto":
        return options.method, f"--method {options.method} given"
    if options.params_json or options.study_name:
        return "tuned", "auto: a tuned setting is given (--params-json or --study-name)"
    if options.neuron not in IF_NEURONS or options.synapse is not None or options.readout != "mean":
        return "calibrated", ("auto: error correction simulates IF neurons without an output synapse for the mean "
                              f"readout; --neuron {options.neuron}, --synapse {options.synapse}, --readout {options.readout} "
                              "take calibration alone")
    if options.nir_out or options.target == "nengo-loihi":
        return "calibrated", ("auto: a corrected setting has per-channel biases and starts, which --nir-out does not "
                              "write and the nengo-loihi emulator does not keep (it starts every neuron at zero)")
    return "corrected", AUTO_CORRECTED_REASON


@dataclass(frozen=True)
class ConversionSettings:
    """convert's settings, checked and resolved (:func:`resolve`): the method that runs and why, its
    calibration or per-layer setting (``layers`` is None for the calibrated methods: calibration sets
    them once the model is read), the data and the simulation."""
    method: str
    method_reason: str
    base: LayerParams  # the neurons' settings the methods start from
    source: dict  # where the setting came from (the --params-json document's source)
    sim: SimConfig
    dataset: Dataset
    inputs: "ModelInputs"
    model_input: ModelInput
    test_limit: int
    steps_list: list
    calibration: Calibration | None = None
    layers: list | None = None


def resolve(options: Options) -> ConversionSettings:
    """Checked settings (everything that can be wrong fails here, before a run is opened)."""
    require(options.loihi_warmup is None or options.loihi_warmup >= 0, "--loihi-warmup must be >= 0 steps")
    require(options.loihi_test_limit >= 0, "--loihi-test-limit must be >= 0 (0 = all)")
    require(options.target == "nengo-loihi" or (options.loihi_warmup is None and not options.loihi_test_limit),
            "--loihi-warmup and --loihi-test-limit go with --target nengo-loihi")
    chosen = from_profile(options, PROFILES)
    require(chosen["test_limit"] >= 0, "--test-limit must be >= 0 (0 = all)")
    require(bool(chosen["steps_list"]) and min(chosen["steps_list"]) >= 1, "--steps-list needs step counts >= 1")
    sim = from_args(SimConfig, options, seed=options.seed)
    require(not (options.params_json and options.study_name), "give --params-json or --study-name, not both")
    method, reason = resolve_method(options)
    require(bool(options.params_json or options.study_name) == (method == "tuned"),
            "--method tuned takes its setting from --study-name or --params-json, and only it does")
    base = LayerParams(synapse=options.synapse, tau_rc=options.tau_rc, tau_ref=options.tau_ref)
    chosen_setting = {"source": {"method": method}}  # the method's calibration or layers, and their source
    if method == "reference":
        chosen_setting["layers"] = reference_layers(base)
    elif method in CALIBRATED_METHODS:
        corrected = method == "corrected"
        rates = options.rates or ("validated" if corrected else "uniform")
        chosen_setting["calibration"] = from_args(Calibration, options, seed=options.seed, rates=rates,
                                                  scales=options.scales or ("channel" if corrected else "layer"))
        require(not corrected or (options.neuron in IF_NEURONS and options.synapse is None),
                "--method corrected simulates IF neurons without an output synapse: use --neuron if or "
                "if-rectified and --synapse none")
        require(corrected or rates != "validated", "--rates validated is chosen per step count by --method corrected; "
                                                   "give --rates uniform or balanced")
        require(rates != "validated" or options.readout == "mean",
                "--rates validated scores the mean readout on validation images; give --readout mean or --rates "
                "uniform / balanced")
    else:
        if options.study_name:
            source = f"study {options.study_name}"
            document = best_params_from_study(options.study_name, options.storage)
            layers, overrides = parse_params(document, source)
        else:
            source = options.params_json
            layers, overrides = load_params(options.params_json)
            document = json.loads(Path(options.params_json).read_text())
        chosen_setting = {"layers": layers, "source": {"method": "tuned", "from": source, **document.get("source", {})}}
        try:
            sim = replace(sim, **overrides)
        except TypeError as exc:
            raise ConfigError(f"{source}: bad 'sim' settings ({exc})") from None
    model_input = from_args(ModelInput, options)
    require(bool(options.onnx_model) or model_input == ModelInput(),
            "--output and --input-scale / --input-mean / --input-std describe the file given with --onnx-model")
    require(options.dataset == "mnist" or bool(options.onnx_model),
            f"--dataset {options.dataset} needs your model (--onnx-model): the networks convert trains are MNIST's")
    dataset = load_dataset(options.dataset, options.seed)  # a user's data read and checked whole, before the run
    return ConversionSettings(method, reason, base, sim=sim, dataset=dataset, inputs=ModelInputs(dataset),
                              model_input=model_input, test_limit=chosen["test_limit"],
                              steps_list=sorted(set(chosen["steps_list"])), **chosen_setting)


def conversion_setting(converted, settings: ConversionSettings, rates: str = "uniform") -> dict:
    """The per-layer setting as a ``--params-json`` document, with where it came from; the
    calibrated methods calibrate here on MNIST training images (``rates``: those that
    ``--rates validated`` chose)."""
    sim = asdict(settings.sim)
    calibration = settings.calibration
    if calibration is None:
        return params_document(settings.layers, sim, settings.source)
    if calibration.rates == "validated":
        calibration = replace(calibration, rates=rates)
    return calibrated_document(converted, settings.inputs.training(), calibration, sim, settings.base)


def layers_summary(layers: list) -> str:
    """The per-layer setting as a JSON param: per-channel lists as their size and range (in full
    in the run's snn/params*.json artifacts)."""
    def brief(value):
        return f"{len(value)} values in [{min(value):.4g}, {max(value):.4g}]" if isinstance(value, list) else value
    return json.dumps([{k: brief(v) for k, v in asdict(p).items()} for p in layers])


def logged_params(options: Options, settings: ConversionSettings, test_images: int) -> dict:
    """The options that decided the run (a method's options only where it uses them)."""
    unused = (() if settings.method in CALIBRATED_METHODS else CALIBRATION_OPTIONS) + \
        (() if settings.method == "tuned" else TUNED_OPTIONS)
    params = option_params(options, *unused)
    params.update(method=settings.method, method_reason=settings.method_reason)  # auto resolved
    if settings.calibration is not None:
        params.update(scales=settings.calibration.scales, rates=settings.calibration.rates)  # resolved
    params.update(test_limit=settings.test_limit, test_images=test_images, steps_list=settings.steps_list,
                  sim=asdict(settings.sim))
    if settings.layers is not None:
        params["layers"] = [asdict(p) for p in settings.layers]
    return params


@dataclass(frozen=True)
class ModelInputs:
    """The data set's samples as the model takes them: calibration reads the training split,
    validation the validation split, never the test split."""
    dataset: Dataset
    prepared: PreparedModel | None = None  # a user's model (else the samples are fed as they are)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return x if self.prepared is None else self.prepared.encode(x, self.dataset.sample_shape)

    def training(self) -> np.ndarray:
        return self.encode(self.dataset.train.x)

    def validation(self, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded subset of ``samples`` validation samples and their labels."""
        split = self.dataset.validation
        index = np.arange(len(split)) if samples >= len(split) else \
            np.sort(np.random.default_rng(seed).choice(len(split), samples, replace=False))
        return self.encode(split.x[index]), split.y[index]


def user_model(options: Options, settings: ConversionSettings, dataset: Dataset):
    """``--onnx-model`` normalised for ``dataset`` (snnbench.conversion.onnx_prepare) and read: the
    prepared model and its converted network, checked against the data set first."""
    source = local_copy(options.onnx_model)
    prepared = prepared_copy(onnx_file(source), dataset.sample_shape,
                             settings.model_input, f"--dataset {dataset.name}")
    converted = onnx_ops.extract(prepared.path, options.maxpool)
    converted.require_hidden()
    check_fits(dataset, dataset.sample_shape, converted.n_outputs,
               settings.calibration.samples if settings.calibration else 0)
    return prepared, converted


def run(options: Options):
    settings = resolve(options)
    sim = settings.sim
    dataset = settings.dataset
    prepared, converted = user_model(options, settings, dataset) if options.onnx_model else (None, None)
    settings = replace(settings, inputs=ModelInputs(dataset, prepared))
    test = dataset.test
    if settings.test_limit:
        test = test.subset(np.arange(min(settings.test_limit, len(test))))
    raw_x = test.x
    if prepared is not None:  # the samples as the model takes them, checked before the run
        test = FeatureSet(settings.inputs.encode(raw_x), test.y, test.checksums, test.origins)
        require(options.target != "nengo-loihi" or test.x.min() >= 0,
                f"--target nengo-loihi: Loihi's input layer turns inputs into spikes and takes values >= 0, but "
                f"{Path(options.onnx_model).name}'s inputs (after its input encoding) reach {test.x.min():.3g}; run it "
                "on nengo-dl (--target nengo-dl)")
    method = settings.method
    print(f"Conversion method: {method} ({settings.method_reason})")
    name = f"convert {method} {Path(options.onnx_model).stem if options.onnx_model else options.arch}, {sim.steps} steps"
    with benchmark_run("convert", logged_params(options, settings, len(test)), data_checksums=test.checksums,
                       run_name=name):
        mlflow.set_tags({"snnbench.method": method, "snnbench.method_reason": settings.method_reason})
        if prepared is not None:
            onnx_path = prepared.path
            mlflow.log_metrics(prepared.agreement(raw_x[:AGREEMENT_SAMPLES], dataset.sample_shape))
            mlflow.set_tags(dataset.tags)
            mlflow.log_dict(prepared.notes, "prepared/prepared.json")
            mlflow.log_artifacts(str(prepared.folder), "prepared")
        else:
            onnx_path = trained_conversion_model(options.arch, from_args(Recipe, options, seed=options.seed)) / ONNX_FILE
            trained = read_summary(onnx_path.parent)
            mlflow.log_metrics({"torch_test_accuracy": trained["torch_test_accuracy"],
                                "train_seconds": trained["train_seconds"]})
        converted = converted or onnx_ops.extract(onnx_path, options.maxpool)
        if converted.approximations:
            mlflow.set_tag("snnbench.approximations", json.dumps(converted.approximations))
        document = conversion_setting(converted, settings)  # calibration: training images only
        layers, _ = parse_params(document, f"{method} setting")
        per_steps = None
        if method == "corrected":  # each step count its own correction, training images only
            corrected = measure.corrected_layers(converted, settings)
            per_steps = {s: c[0] for s, c in corrected.items()}
            mlflow.log_dict({str(s): {"layers": [asdict(p) for p in c[0]], "errors": c[1], **c[2]}
                             for s, c in corrected.items()}, "snn/corrected_layers.json")
            mlflow.log_params({"rates_at_steps": json.dumps({s: c[2]["rates"] for s, c in corrected.items()}),
                               "rate_factor_at_steps": json.dumps({s: c[2]["rate_factor"]
                                                                   for s, c in corrected.items()})})
            layers = per_steps[sim.steps]
            chosen = corrected[sim.steps][2]
            if chosen["rates"] != "uniform":  # the calibrated document of the rates chosen at --steps
                document = conversion_setting(converted, settings, chosen["rates"])
            document = params_document(layers, document["sim"],
                                       {**document["source"], "method": "corrected", "steps": sim.steps,
                                        "rates": chosen["rates"], "rate_factor": chosen["rate_factor"]})
        if settings.layers is None:
            mlflow.log_param("layers", layers_summary(layers))
        keys = {"benchmark": "convert", "model": Path(prepared.notes["source"]).stem if prepared else
                f"conversion-{options.arch}",
                "modality": dataset.modality, "method": method, "seed": options.seed}
        dnn = measure.evaluate_dnn(onnx_path, test.x, test.y, keys)
        snn = measure.evaluate_snn(converted, layers, settings, test.x, test.y, keys, per_steps)
        snn["rows"] = measure.paired_losses(snn["rows"], dnn["row"])  # same images
        snn["row"] = snn["rows"][[r["steps"] for r in snn["rows"]].index(sim.steps)]
        equivalence = measure.rate_equivalence(converted, onnx_path, test.x[:EQUIVALENCE_IMAGES], sim)
        measure.log_metrics(converted, dnn, snn, equivalence)
        targets = measure.run_targets(options, converted, layers, sim, test, keys)
        log_result_table([dnn["row"], *snn["rows"], *targets])
        measure.log_artifacts(Path(prepared.notes["source"]) if prepared else onnx_path, converted, document, dnn, snn,
                              test.y)
        run_summary.headline(
            f"Accuracy on {len(test)} test samples of {dataset.name}, % [95% interval]; loss: DNN minus SNN on the same images, "
            f"points [paired 95% interval] ({method}; --steps {sim.steps})",
            [{"engine": r["engine"], "steps": r["steps"],
              "accuracy": run_summary.interval(r["accuracy"], r["accuracy_ci_low"], r["accuracy_ci_high"]),
              "loss": run_summary.interval(r["paired_loss"], r["paired_loss_ci_low"], r["paired_loss_ci_high"],
                                           sign="+") if "paired_loss" in r else ""}
             for r in [dnn["row"], *snn["rows"], *targets]])
        run_summary.headline("Rate-mode network against ONNX Runtime", [{"max |logit difference|": f"{equivalence:.2e}"}])
