"""``snnbench noise_sweep``: DNN (ONNX Runtime) vs converted Nengo SNN vs snntorch SNN under noise.

Every model sees the same test samples and, for a given (position, std, seed), the same Gaussian
draws (snnbench.noise). One child run per (family, model, modality, model seed, position, std,
noise seed) plus one clean run per model; the parent logs the tables of
:mod:`~snnbench.benchmarks.noise_sweep_tables`. Run again with the same options, a sweep resumes:
finished children are reused. Models: see :mod:`~snnbench.benchmarks.noise_sweep_models`.
"""

import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
from tqdm import tqdm

from snnbench.benchmarks import noise_sweep_perturbations as perturbed
from snnbench.benchmarks import noise_sweep_tables as tables
from snnbench.benchmarks import robustness_claims
from snnbench.benchmarks.noise_sweep_models import (Models, Subject, SweepSettings, dataset_modality, sample_shape,
                                                    study_references, sweep_test_data, user_onnx)
from snnbench.benchmarks.options import Common, from_profile, modalities, require, resume
from snnbench.config import Take, auto, choice_list, command_options, float_list, from_args, option, positive
from snnbench.conversion import onnx_ops
from snnbench.conversion.onnx_prepare import ModelInput
from snnbench.data import DATASET_HELP
from snnbench.device import resolve_device
from snnbench.engines import LOIHI_EMULATOR, NENGO_SNN, ORT_DNN, SNNTORCH_SNN
from snnbench.evaluation import harness
from snnbench.evaluation.metrics import COLUMNS
from snnbench.execution import Cluster, executor_for
from snnbench.models.multimodal import ModelSpec
from snnbench.noise import ADDED_AT, NoiseSpec
from snnbench.perturbations import gaussian as gaussian_family
from snnbench.tracking import runs as tracking
from snnbench.training import recipes

BENCHMARK = "noise_sweep"
FAMILIES = (ORT_DNN, NENGO_SNN, SNNTORCH_SNN, LOIHI_EMULATOR)
CONVERTED = (NENGO_SNN, LOIHI_EMULATOR)  # engines that run the DNN converted to spikes
DEFAULT_STDS = gaussian_family.STDS
# one colour per engine in the MLflow UI's charts (the tag it reads), so children plot as curves per engine
ENGINE_COLORS = {ORT_DNN: "#308613", NENGO_SNN: "#2272b4", SNNTORCH_SNN: "#c83243", LOIHI_EMULATOR: "#8a4fbf"}
CORRECT = "correct.npy"  # a child's per-sample correctness (packed bits), for the paired differences
# Settings each profile fills in when an option is not given. Training: each study's own recipe
# (snnbench.training.recipes), unless --epochs / --train-limit override it for every model.
PROFILES = {"quick": dict(test_limit=500, steps=20, seeds=1), "full": dict(test_limit=0, steps=30, seeds=3)}


MODELS = "models (default: trained here, cached)"


@dataclass(frozen=True)
class SweepOptions:
    """noise_sweep's own options (besides the common ones, the cluster's and the noise mode)."""
    stds: list = option(list(DEFAULT_STDS), "noise standard deviations", float_list)
    positions: list = option(list(ADDED_AT), "where the noise is added: input, pre (layer input current), post "
                                              "(layer output)", choice_list(ADDED_AT))
    families: list = option(list(FAMILIES[:3]), "ort-dnn: DNNs in ONNX Runtime; nengo-snn: the same DNNs converted "
                                                "to Nengo; snntorch-snn: the multimodal suite's trained SNNs; "
                                                "loihi-emulator: the converted SNN on nengo-loihi's Loihi emulator "
                                                "(as --target nengo-loihi adds)", choice_list(FAMILIES))
    target: str = option("nengo-dl", "nengo-loihi: also run each converted SNN on nengo-loihi's Loihi emulator "
                                     "(fixed-point weights, Loihi's neurons; noise at the input only, as a chip takes "
                                     "it)", choices=("nengo-dl", "nengo-loihi"))
    perturbations: list = option(["gaussian"], "perturbation families (snnbench.perturbations): gaussian (the "
                                               "noise of --stds / --positions), MNIST-C's image corruptions, weight "
                                               "faults, or all; each at its levels (quick: one level each)",
                                 choice_list(perturbed.CHOICES))
    seeds: int | None = option(None, "noise repeats (noise seeds seed .. seed+N-1; auto: 1 quick, 3 full)",
                               auto(positive(int)))
    test_limit: int | None = option(None, "test samples (a fixed seeded subset), 0 = all (auto: 500 quick, all "
                                          "full)", auto(int))
    train_limit: int | None = option(None, "training samples of every model, 0 = all (auto: each study's own "
                                           "recipe; conversion MLP all, snntorch suite 2000 quick / all full)",
                                     auto(int))
    epochs: int | None = option(None, "training epochs of every model (auto: each study's own recipe; conversion "
                                      "MLP 3, suite 2 quick / 200 full)", auto(int))
    steps: int | None = option(None, "Nengo simulation steps per sample (auto: 20 quick, 30 full)", auto(int))
    snn_steps: int | None = option(None, "snntorch SNN time steps (auto: the suite's 4)", auto(int))
    models_from: str = option("", "a multimodal_study run id: sweep its trained models (size S DNNs, reference "
                                  "SNNs) as they are, every seed it trained, instead of training the suite's here",
                              group=MODELS)
    model_seeds: int | None = option(None, "model seeds: models trained here use seeds seed .. seed+N-1 (auto: 1, "
                                           "or every seed of the --models-from run)", auto(positive(int)),
                                     group=MODELS)
    onnx_model: str = option("", "your DNN (an ONNX file from any exporter, or a models:/ or runs:/ reference; see "
                                 "--output and --input-*): swept in ONNX Runtime and converted to Nengo (calibrated "
                                 "on --dataset's training split); needs --dataset", group=MODELS)
    snntorch_model: str = option("", "your SNN: a logged MLflow PyTorch model (models:/ID or runs:/RUN/PATH) of the "
                                     "suite's family; needs --dataset", group=MODELS)
    dataset: str = option("", "the test and calibration data of --onnx-model / --snntorch-model: " + DATASET_HELP,
                          group=MODELS)


def options_class(name: str, perturbations: str) -> type:
    """The settings of the sweep's commands (``noise_sweep``, ``robustness``: its perturbations by default)."""
    own = ("stds", "positions", "families", "target", "perturbations")
    return command_options(
        name, Common, Cluster,
        resume("take over the unfinished run of this sweep even if it is marked running (its process was stopped); "
               "a failed or interrupted run is reopened without it"),
        Take(SweepOptions, own, defaults={"perturbations": [perturbations]}),
        modalities("image (the conversion study's MLP and the suite's image nets), audio, multimodal"),
        Take(SweepOptions, ["seeds"]), Take(NoiseSpec, ["mode"], defaults={"mode": "frozen"}),
        Take(SweepOptions, skip=(*own, "seeds")), ModelInput, doc="noise_sweep's settings")


Options = options_class("NoiseSweepOptions", "gaussian")
OPTIONS = {BENCHMARK: Options}


def settings(options: Options) -> SweepSettings:
    """The options that decide the results, checked, every default resolved (logged as parent params)."""
    chosen = from_profile(options, PROFILES)
    require(chosen["test_limit"] >= 0 and (options.train_limit or 0) >= 0,
            "--test-limit and --train-limit must be >= 0 (0 = all samples)")
    for name in ("epochs", "steps", "snn_steps"):
        value = chosen.get(name, getattr(options, name))
        require(value is None or value >= 1, f"--{name.replace('_', '-')} must be >= 1")
    require(options.stds and all(np.isfinite(s) and s >= 0 for s in options.stds),
            f"--stds must be finite numbers >= 0, got {options.stds}")
    user = bool(options.onnx_model or options.snntorch_model)
    model_input = from_args(ModelInput, options)
    require(bool(options.onnx_model) or model_input == ModelInput(),
            "--output and --input-scale / --input-mean / --input-std describe the file given with --onnx-model")
    require(not user or options.dataset, "--onnx-model / --snntorch-model need --dataset (mnist, fsdd or multimodal)")
    require(not (user and options.models_from), "--models-from takes the suite's models; leave it out with your own")
    overrides = {k: getattr(options, k) for k in ("epochs", "train_limit") if getattr(options, k) is not None}
    resolved = SweepSettings(
        stds=sorted(set(options.stds)), positions=list(dict.fromkeys(options.positions)),
        families=list(dict.fromkeys(options.families + ([LOIHI_EMULATOR] if options.target == "nengo-loihi" else []))),
        modalities=[dataset_modality(options.dataset, options.seed)] if user else list(dict.fromkeys(options.modalities)),
        perturbations=perturbed.chosen(options.perturbations), noise_mode=options.noise_mode, seed=options.seed,
        profile=options.profile, device=str(resolve_device(options.device)),
        snn_steps=options.snn_steps or ModelSpec().steps, models_from=options.models_from,
        onnx_model=options.onnx_model, snntorch_model=options.snntorch_model, dataset=options.dataset,
        model_input=asdict(model_input) if options.onnx_model else None,
        conversion_training=replace(recipes.CONVERSION, **overrides).as_params(),
        suite_training=replace(recipes.SUITE[options.profile], **overrides).as_params(), **chosen)
    if user:
        model_seeds = [0]  # a user's model is one trained model
        if options.onnx_model:  # the file normalised, checked against the data and read before the run starts
            onnx_ops.extract(user_onnx(resolved).path).require_hidden()
    elif options.models_from:
        found = sorted({seed for _, _, seed in study_references(options.models_from, resolved.snn_steps)})
        model_seeds = found[:options.model_seeds] if options.model_seeds else found
    else:
        model_seeds = list(range(options.seed, options.seed + (options.model_seeds or 1)))
    return replace(resolved, model_seeds=model_seeds)


def subjects(settings: SweepSettings) -> list:
    """Every (family, model, modality, model seed) the sweep evaluates, in a stable order."""
    if settings.user:
        own = {ORT_DNN: settings.onnx_model, NENGO_SNN: settings.onnx_model, LOIHI_EMULATOR: settings.onnx_model,
               SNNTORCH_SNN: settings.snntorch_model}
        return [Subject(family, "user", settings.modalities[0]) for family, given in own.items()
                if given and family in settings.families]
    out = []
    for seed in settings.model_seeds or [settings.seed]:
        for family in settings.families:
            for modality in settings.modalities:
                if family != SNNTORCH_SNN and modality == "image":
                    out.append(Subject(family, "conversion-mlp", modality, seed))
                out.append(Subject(family, "multimodal", modality, seed))
    return out


def grid(subject: Subject, settings: SweepSettings) -> list:
    """The child configurations of one subject: its clean run first, then the noisy ones."""
    base = {**asdict(subject), "noise_mode": settings.noise_mode}
    clean = {**base, "position": "none", "std": 0.0, "noise_seed": settings.seed}
    positions = [p for p in settings.positions if p == "input"] if subject.family == LOIHI_EMULATOR else settings.positions
    noisy = [{**base, "position": p, "std": s, "noise_seed": settings.seed + r}
             for p in positions for s in settings.stds for r in range(settings.seeds)]
    return [clean, *(noisy if "gaussian" in settings.perturbations else []),
            *perturbed.children(subject, settings, base)]


def _key(child: dict, settings: SweepSettings) -> harness.ResultKey:
    """What identifies a child's result row (harness.KEY_COLUMNS)."""
    steps = {ORT_DNN: 1, NENGO_SNN: settings.steps, LOIHI_EMULATOR: settings.steps, SNNTORCH_SNN: settings.snn_steps}
    return harness.ResultKey(BENCHMARK, child["family"], child["model"], child["modality"],
                             "calibrated" if child["family"] in CONVERTED else "", steps[child["family"]],
                             _noise(child), settings.seed)


def _row(child: dict, measured: harness.ResultRow, clean: float, seconds: float, run_id: str,
         reused: bool) -> harness.ResultRow:
    """A child's result row: its measured row with the child's own columns and the drop after the metrics."""
    return measured.with_extras(model_seed=child["model_seed"], **perturbed.row_keys(child), clean_accuracy=clean,
                                accuracy_drop_pp=100 * (clean - measured["accuracy"]), eval_seconds=seconds,
                                reused=reused, run_id=run_id)


def _noise(child: dict) -> NoiseSpec:
    return NoiseSpec(child["std"], child["position"], child["noise_mode"], child["noise_seed"])


def evaluate(model, data, key: harness.ResultKey) -> harness.ResultRow:
    """One child's result row, with which samples it got right (tests patch it to interrupt a sweep)."""
    logits = model.predict(np.asarray(data.x, np.float32), key.noise, 0)
    return replace(harness.score(model, logits, data.y, model.last_activity, key.noise), key=key)


def _finished_row(run, child: dict, settings: SweepSettings) -> harness.ResultRow:
    m = run.data.metrics
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=CORRECT)
    correct = np.unpackbits(np.load(path))[:int(m["n"])].astype(bool)
    measured = harness.result_row(_key(child, settings), m, correct)
    return _row(child, measured, m["clean_accuracy"], m.get("eval_seconds", float("nan")), run.info.run_id, True)


def _log_child(row: harness.ResultRow, data, model_id: str | None):
    """The child's metrics (linked to its model), the fields a user groups by as tags, its dataset
    and per-sample correctness."""
    logged = [*COLUMNS, "clean_accuracy", "accuracy_drop_pp", "eval_seconds"]
    mlflow.log_metrics({**{k: row[k] for k in logged if np.isfinite(row[k])}, "noise_std": row["noise_std"]},
                       model_id=model_id, dataset=tracking.log_dataset(data, "test"))
    mlflow.set_tags({"engine": row["engine"], "model": row["model"], "modality": row["modality"],
                     "position": row["noise_position"], "model_seed": str(row["model_seed"]),
                     "perturbation": row["perturbation"], "level": f"{row['level']:g}",
                     **({"attack_source": row["attack_source"]} if "attack_source" in row else {}),
                     "mlflow.runColor": ENGINE_COLORS[row["engine"]]})
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / CORRECT, np.packbits(row.correct))
        mlflow.log_artifact(str(Path(tmp) / CORRECT))


@dataclass(frozen=True)
class ChildUnit:
    """A unit of work (snnbench.execution): one child configuration of one subject."""
    subject: Subject
    child: dict
    settings: SweepSettings
    models: Models


_BUILT: "OrderedDict[tuple, harness.Model]" = OrderedDict()  # the last subjects' models in this process


def evaluate_child(unit: ChildUnit) -> tuple[harness.ResultRow, float]:
    """The child's result row (with its per-sample correctness) and evaluation seconds; the subject's model is
    built once per process (kept for the subject's next children, which run in order)."""
    faulty = perturbed.weight_fault(unit.child)  # the weights of this child, when a fault changes them
    key = (unit.subject, tracking.config_key(unit.settings.params()), faulty)
    if key not in _BUILT:
        while len(_BUILT) >= 2:
            _BUILT.popitem(last=False)
        _BUILT[key] = perturbed.faulty_model(unit, faulty) if faulty else unit.models.model(unit.subject)
    data = sweep_test_data(unit.settings, unit.subject.modality)  # seeded: the same for every family
    data = perturbed.corrupted(data, unit.child, sample_shape(unit.settings, unit.subject.modality))
    data = perturbed.attacked(data, unit)  # the same adversarial samples for every engine of the model
    data = unit.models.inputs(unit.subject, data)  # as the subject's model takes them
    started = time.perf_counter()
    measured = evaluate(_BUILT[key], data, _key(unit.child, unit.settings))
    return measured, time.perf_counter() - started


def sweep(settings: SweepSettings, models: Models, device: str, executor) -> list:
    """Run the grid under the active parent run, reusing finished children; returns a row per child.
    Units run on the executor; each child is logged here as it comes back, a noisy one only after
    its subject's clean child (its drop is measured against it)."""
    done = tracking.finished_children(mlflow.active_run().info.run_id)
    plan = [(subject, child) for subject in subjects(settings) for child in grid(subject, settings)]
    rows, clean, waiting, units, data = {}, {}, {}, [], {}
    for subject, child in plan:
        key = tracking.config_key(child)
        if key in done:
            rows[key] = _finished_row(done[key], child, settings)
            clean[subject] = rows[key]["clean_accuracy"]
        else:
            units.append(ChildUnit(subject, child, settings, models))
    several = len(settings.model_seeds) > 1
    with tqdm(total=len(plan), initial=len(rows), desc="noise_sweep", unit="run", dynamic_ncols=True) as progress:
        def record(unit: ChildUnit, measured: harness.ResultRow, seconds: float):
            subject, child = unit.subject, unit.child
            if subject.modality not in data:
                data[subject.modality] = sweep_test_data(settings, subject.modality)
            name = (f"{subject.label}{f' model seed {subject.model_seed}' if several else ''} "
                    f"{perturbed.describe(child)} seed={child['noise_seed']}")
            with tracking.child_run(name, child, device=device, data_checksums=data[subject.modality].checksums) as run:
                row = _row(child, measured, clean[subject], seconds, run.info.run_id, False)
                _log_child(row, data[subject.modality], models.model_ids.get(models.name(subject)))
            rows[tracking.config_key(child)] = row
            progress.set_postfix_str(f"{subject.label} {perturbed.describe(child)}: "
                                     f"{100 * row['accuracy']:.1f}%")
            progress.update()

        for index, result in executor.map(evaluate_child, units, overlap=True):  # logs one, runs the next
            unit = units[index]
            if unit.child["position"] == "none":
                clean[unit.subject] = result[0]["accuracy"]
                record(unit, *result)
                for early in waiting.pop(unit.subject, []):
                    record(*early)
            elif unit.subject in clean:
                record(unit, *result)
            else:
                waiting.setdefault(unit.subject, []).append((unit, *result))
    return [rows[tracking.config_key(child)] for _, child in plan]


def run_name(settings: SweepSettings, benchmark: str = BENCHMARK) -> str:
    """What the parent run is, as its name (under ``mlflow run`` too, instead of a random one)."""
    if settings.user:
        return f"{benchmark} {settings.profile}, your model on {settings.dataset}"
    seeds = len(settings.model_seeds)
    source = f" from run {settings.models_from[:8]}" if settings.models_from else ""
    return f"{benchmark} {settings.profile}, {seeds} model seed{'s' if seeds > 1 else ''}{source}"


def run(options: Options, benchmark: str = BENCHMARK):
    """The sweep as the parent run of ``benchmark``'s experiment (``robustness`` runs it with every family)."""
    resolved = settings(options)
    device = resolve_device(options.device)
    models = Models(resolved, device)
    started, cpu_started = time.perf_counter(), time.process_time()
    with executor_for(options) as executor, \
            tracking.benchmark_run(benchmark, resolved.params(), device=str(device),
                                   run_name=run_name(resolved, benchmark), sweep=True,
                                   resume=True if options.resume else "stopped"), \
            tempfile.TemporaryDirectory(prefix="snnbench-noise-sweep-") as out:
        models.prepare(subjects(resolved))
        rows = sweep(resolved, models, str(device), executor)
        if "gaussian" in resolved.perturbations:
            tables.log_results(perturbed.gaussian_rows(rows), resolved, Path(out))
        perturbed.log_results(rows, resolved)
        robustness_claims.log_results(rows, resolved, subjects(resolved), Path(out))
        # this invocation's times (training included; a resumed sweep logs its own)
        mlflow.log_metrics({"wall_seconds": time.perf_counter() - started,
                            "cpu_seconds": time.process_time() - cpu_started})
