"""The snntorch multimodal suite (image, audio and fused inputs; DNN vs SNN): ``multimodal`` (one
configuration) and the sweeps of :data:`SWEEPS`. A parent run has one child per (modality, swept value,
seed) that trains (or reuses, cached) its DNN and / or SNN and logs ``dnn_*`` / ``snn_*`` metrics: per-epoch
``train_loss`` and ``val_accuracy``, ``best_val_accuracy``, the best-validation weights' ``test_accuracy``
under the evaluation noise, throughput, and for the DNN ONNX Runtime's accuracy under the same noise draws.
"""

import itertools
import tempfile
import time
from collections import namedtuple
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import torch
from tqdm import tqdm

from snnbench import engines
from snnbench.engines import ORT_DNN, SUITE
from snnbench.benchmarks.multimodal_grid import EXPERIMENT, NOISE_POSITIONS, NOISE_STDS
from snnbench.benchmarks.multimodal_options import (ENGINE_OPTIONS, PROFILES, Seeds, SuiteTraining, data_checksums,
                                                   devices_of, seeds_of, settings_by_seed)
from snnbench.benchmarks.options import Common, from_profile, modalities, option_params, require, resume
from snnbench.config import (Take, choice_list, command_options, float_list, from_args, int_list, option,
                             option_name, options_of)
from snnbench.data import FeatureSet
from snnbench.device import resolve_device
from snnbench.engines.pytorch import suite_engine
from snnbench.evaluation import harness, plots
from snnbench.evaluation.metrics import ACTIVITY, STATIC, accuracy, seed_interval
from snnbench.execution import executor_for
from snnbench.models.multimodal import FAMILIES, SIZES, ModelSpec
from snnbench.models.export import ONNX_FILE
from snnbench.models.spiking import NEURONS, RESETS
from snnbench.noise import ADDED_AT, NoiseSpec
from snnbench.tracking import summary as run_summary
from snnbench.tracking.runs import benchmark_run, child_run, config_key, finished_children, log_dataset
from snnbench.training.cache import pack, unpack
from snnbench.training.grid import Engine, Job, train_jobs, trained_multimodal_model
from snnbench.training.suite import (TrainSettings, load_trained_multimodal, log_trained_model, test_data,
                                     training_data)


# The child param that varies, the option holding its values (their defaults, argparse type and help)
# and the families it applies to: each sweep is one of the study's experiments (multimodal_grid.EXPERIMENTS),
# its values and families.
Sweep = namedtuple("Sweep", "factor option values parse families help")


def _sweep(experiment: str, factor: str, option: str, parse, help: str, values: tuple = ()) -> Sweep:
    """The sweep of the study's ``experiment`` (its values, or the given ``values`` of a noise)."""
    return Sweep(factor, option, values or EXPERIMENT[experiment].values, parse, EXPERIMENT[experiment].families, help)


SWEEPS = {  # command -> its sweep (None: one configuration)
    "multimodal": None,
    "size_sweep": _sweep("size", "size", "--sizes", choice_list(tuple(SIZES)),
                         "model sizes (parameter budgets; S = 1,600,000)"),
    "noise_level": _sweep("noise_level", "noise_std", "--noise-stds", float_list,
                          "evaluation noise standard deviations", NOISE_STDS),
    "noise_position": _sweep("noise_position", "noise_position", "--noise-positions", choice_list(ADDED_AT),
                             "where the evaluation noise is added", NOISE_POSITIONS),
    "reset_sweep": _sweep("reset", "reset", "--resets", choice_list(tuple(RESETS)), "SNN reset mechanisms"),
    "neuron_sweep": _sweep("neuron", "neuron", "--neurons", choice_list(NEURONS), "SNN neuron models"),
    "timestep_sweep": _sweep("timesteps", "steps", "--steps-list", int_list, "SNN time steps"),
}
SPEC_FIELDS = tuple(f.name for f in options_of(ModelSpec))
NOISE_FACTORS = {"noise_std": "std", "noise_position": "position"}  # a swept factor -> its NoiseSpec field
NOISE_FIELDS = tuple(option_name(f) for f in options_of(NoiseSpec))
RESULT_METRICS = tuple(c for m in (*STATIC, *ACTIVITY) for c in m.columns)  # besides accuracy


# --- evaluation --------------------------------------------------------------------------------

def _timed_predict(engine, test: FeatureSet, noise: NoiseSpec) -> tuple[np.ndarray, float]:
    """The logits and the samples per second."""
    started = time.perf_counter()
    logits = engine.predict(test.x, noise)
    return logits, len(test) / (time.perf_counter() - started)


def evaluate(model, test: FeatureSet, noise: NoiseSpec | None, device) -> tuple[dict, np.ndarray]:
    """Through the harness: test accuracy with its Wilson 95% interval, activity and size metrics
    (snnbench.evaluation.metrics), and throughput; also the logits."""
    engine = engines.build(suite_engine(model), model, {"device": device})
    noise = noise or harness.CLEAN
    logits, samples_per_s = _timed_predict(engine, test, noise)
    row = harness.score(engine, logits, test.y, engine.last_activity, noise)
    metrics = {**{f"test_{k}": row[k] for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high")},
               "n_test": len(test), "eval_samples_per_s": samples_per_s, **{k: row[k] for k in RESULT_METRICS}}
    return metrics, logits


def log_history(run_id: str, history: list[dict], prefix: str = ""):
    """A training's per-epoch series on a run, in one MlflowClient.log_batch (which splits it into
    requests of at most 1,000 values, MLflow's limit)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [Metric(f"{prefix}{name}", float(h[name]), now, epoch) for epoch, h in enumerate(history)
               for name in ("train_loss", "val_accuracy", "epoch_seconds")]
    MlflowClient().log_batch(run_id, metrics=metrics)


def evaluate_onnx(folder: Path, test: FeatureSet, noise: NoiseSpec, torch_logits: np.ndarray) -> dict:
    """The exported DNN in ONNX Runtime (engine ort-dnn) under the same noise draws: accuracy,
    throughput and the largest logit difference from torch."""
    logits, samples_per_s = _timed_predict(engines.build(ORT_DNN, folder / ONNX_FILE), test, noise)
    return {"ort_test_accuracy": accuracy(logits, test.y), "ort_samples_per_s": samples_per_s,
            "ort_torch_max_abs_diff": float(np.abs(logits - torch_logits).max())}


def score_family(spec: ModelSpec, noise: NoiseSpec, settings: TrainSettings, test: FeatureSet,
                 device: torch.device) -> dict:
    """Train (or reuse) one model and evaluate it (logs nothing): its metrics, prefixed by the
    family, and its training result."""
    folder = trained_multimodal_model(spec, settings, device)
    model, _, result = load_trained_multimodal(folder)
    scores, logits = evaluate(model, test, noise, device)
    kept = ("best_val_accuracy", "best_epoch", "train_samples_per_s", "parameter_count", "hidden_width")
    # mean_epoch_seconds: the per-epoch series is logged as {family}_epoch_seconds
    metrics = {**{k: result[k] for k in kept}, "mean_epoch_seconds": result["epoch_seconds"],
               "epochs_trained": len(result["history"]), **scores}
    if noise.active:
        metrics["clean_test_accuracy"] = evaluate(model, test, None, device)[0]["test_accuracy"]
    if spec.family == "dnn":
        metrics.update(evaluate_onnx(folder, test, noise, logits))
    return {"metrics": {f"{spec.family}_{k}": float(v) for k, v in metrics.items() if v is not None},
            "result": result}


def record_family(family: str, scored: dict, folder: Path, test_set, name: str) -> dict:
    """Log one family's history, training result, model and metrics on the active child run."""
    log_history(mlflow.active_run().info.run_id, scored["result"]["history"], f"{family}_")
    mlflow.set_tag(f"snnbench.{family}_model_folder", str(folder))
    mlflow.log_dict(scored["result"], f"{family}_training.json")
    mlflow.log_metrics(scored["metrics"], model_id=log_trained_model(folder, name), dataset=test_set)
    return scored["metrics"]


@dataclass(frozen=True)
class SuiteChild:
    """One child configuration of a suite command: its model (of each of its families), evaluation
    noise and seed."""
    model: ModelSpec  # its family: the first of families (each family's: spec(family))
    families: list
    noise: NoiseSpec
    seed: int

    def spec(self, family: str) -> ModelSpec:
        return replace(self.model, family=family)

    def params(self) -> dict:
        """As the child run's params (and its result rows' keys): the model's and noise's options."""
        return {**{k: getattr(self.model, k) for k in SPEC_FIELDS},
                **{option_name(f): getattr(self.noise, f.name) for f in options_of(NoiseSpec)},
                "modality": self.model.modality, "families": list(self.families), "seed": self.seed}

    def name(self, factor: str | None) -> str:
        return self.model.modality + (f" {factor}={self.params()[factor]}" if factor else "") + f" seed={self.seed}"


@dataclass(frozen=True)
class Configuration:
    """A unit of work (snnbench.execution): every family of one configuration, scored on the test split."""
    child: SuiteChild
    settings: TrainSettings
    test_limit: int
    device: str
    models: tuple  # snnbench.training.cache.pack of each family's trained model


def score_configuration(unit: Configuration) -> dict:
    for packed in unit.models:
        unpack(packed)
    child = unit.child
    test = test_data(child.model.modality, unit.test_limit)
    return {family: score_family(child.spec(family), child.noise, unit.settings, test, torch.device(unit.device))
            for family in child.families}


# --- command line ------------------------------------------------------------------------------

def options_class(command: str) -> type:
    """The settings of the suite's ``command`` (``multimodal`` or a sweep of :data:`SWEEPS`)."""
    sweep = SWEEPS[command]
    factor = sweep.factor if sweep else None
    families = [("families", list, option(list(FAMILIES), "dnn (ReLU network) and / or snn (snntorch neurons)",
                                          choice_list(FAMILIES)))] if sweep is None or len(sweep.families) > 1 else []
    swept = [(_swept_option(sweep), list, option(list(sweep.values), sweep.help, sweep.parse))] if sweep else []
    noise = NOISE_FACTORS.get(factor)
    return command_options(
        "".join(w.title() for w in command.split("_")) + "Options", Common, modalities(), *families, *swept, SuiteTraining,
        Take(ModelSpec, skip=(factor,), group="model (the reference defaults; a swept factor replaces its option)"),
        Take(NoiseSpec, skip=(noise,), group="evaluation noise (never seen in training)",
             defaults={"std": 0.1 if command == "noise_position" else 0.0,
                       "position": "pre" if command == "noise_level" else "none"}),
        resume("reopen the unfinished run of the same parameters and skip finished configurations"),
        Seeds, *ENGINE_OPTIONS, doc=f"{command}'s settings", command=command)


def _swept_option(sweep: Sweep) -> str:
    return sweep.option.lstrip("-").replace("-", "_")


OPTIONS = {command: options_class(command) for command in SWEEPS}


def configurations(options) -> list[SuiteChild]:
    """One child configuration per (modality, swept value, seed), in the order they run (each checked here)."""
    sweep = SWEEPS[options.command]
    families = list(getattr(options, "families", sweep.families if sweep else FAMILIES))
    values = getattr(options, _swept_option(sweep)) if sweep else [None]
    require(len(values) > 0, f"{sweep.option if sweep else 'values'} is empty; give at least one value")
    factor = sweep.factor if sweep else None
    children = []
    for modality, value, seed in itertools.product(options.modalities, values, seeds_of(options)):
        swept = {} if factor is None else {NOISE_FACTORS.get(factor, factor): value}
        spec = {k: v for k, v in swept.items() if k in SPEC_FIELDS}
        noise = {k: v for k, v in swept.items() if k not in SPEC_FIELDS}
        children.append(SuiteChild(from_args(ModelSpec, options, modality=modality, family=families[0], **spec),
                                   families, from_args(NoiseSpec, options, **noise), seed))
    return children


def run_name(options) -> str:
    seeds = len(seeds_of(options))
    return f"{options.command} {options.profile}, {', '.join(options.modalities)}, {seeds} seed{'s' if seeds > 1 else ''}"


def run(options):
    sweep = SWEEPS[options.command]
    factor = sweep.factor if sweep else None
    scale = from_profile(options, PROFILES)  # epochs and data limits
    device = resolve_device(options.device)
    configs = configurations(options)
    by_seed = settings_by_seed(options, scale)
    # each configuration's models (every configuration checked before any run or training starts)
    jobs = [[Job(child.spec(family), by_seed[child.seed]) for family in child.families] for child in configs]
    devices = devices_of(options)
    checksums = data_checksums(options.modalities)
    params = {**option_params(options, "resume", "cluster", "workers"), **scale, "seeds": seeds_of(options),
              "device": str(device)}  # resolved, never 'auto'
    gpus = [d.index for d in devices if d.type == "cuda"]
    with executor_for(options, gpus) as executor, \
            benchmark_run(options.command, params, device=str(device), data_checksums=checksums, resume=options.resume,
                          sweep=True, run_name=run_name(options)) as parent:
        # every model the sweep needs, trained together first (stacked; cached for what follows)
        training = train_jobs([job for config_jobs in jobs for job in config_jobs], devices, from_args(Engine, options),
                              executor=executor)
        mlflow.log_metric("train_wall_seconds", training["wall_seconds"])
        done = finished_children(parent.info.run_id) if options.resume else {}
        child_configs = [{**child.params(), **scale, "lr": options.lr, "batch_size": options.batch_size,
                          "validation": options.validation} for child in configs]
        rows = [None] * len(configs)
        for i, (child, child_config) in enumerate(zip(configs, child_configs)):
            previous = done.get(config_key(child_config))
            if previous is not None:
                tqdm.write(f"{child.name(factor)}: finished in run {previous.info.run_id}, skipped")
                rows[i] = {**child.params(), **previous.data.metrics}
        todo = [i for i, row in enumerate(rows) if row is None]
        units = [Configuration(configs[i], by_seed[configs[i].seed], scale["test_limit"], str(device),
                               tuple(pack(job.folder) for job in jobs[i]) if executor.client else ())
                 for i in todo]
        progress = tqdm(total=len(configs), initial=len(configs) - len(todo), desc=options.command, unit="config",
                        dynamic_ncols=True)
        for k, scored in executor.map(score_configuration, units, gpu=device.type == "cuda"):
            i = todo[k]
            child = configs[i]
            modality = child.model.modality
            with child_run(child.name(factor), child_configs[i], device=str(device), data_checksums=checksums):
                test = test_data(modality, scale["test_limit"])
                mlflow.log_params({"n_test": len(test)})
                test_set = log_dataset(test, "test")
                train, validation = training_data(modality, by_seed[child.seed])
                log_dataset(train, "train")
                log_dataset(validation, "validation")
                metrics = {}
                for family, job in zip(child.families, jobs[i]):
                    metrics.update(record_family(family, scored[family], job.folder, test_set, f"{modality}-{family}"))
            tqdm.write(f"{child.name(factor)}: " + ", ".join(
                f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith("accuracy")))
            rows[i] = {**child.params(), **metrics}
            progress.update()
        progress.close()
        log_summary(rows, options.command, factor)


def result_row(row: dict, family: str, command: str) -> harness.ResultRow:
    """One configuration, seed and family as a result row (snnbench.evaluation.harness)."""
    key = harness.ResultKey(command, SUITE[family], f"multimodal-{row['size']}", row["modality"], "",
                            row["steps"] if family == "snn" else 1, NoiseSpec(*(row[k] for k in NOISE_FIELDS)),
                            row["seed"])
    measured = {"n": row.get(f"{family}_n_test"),
                **{k: row.get(f"{family}_test_{k}") for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high")},
                **{k: row.get(f"{family}_{k}") for k in RESULT_METRICS}}
    return harness.result_row(key, measured, best_val_accuracy=row.get(f"{family}_best_val_accuracy"),
                              ort_test_accuracy=row.get(f"{family}_ort_test_accuracy"))


def log_summary(rows: list[dict], command: str, factor: str | None):
    """Parent-run metrics (per modality, family and swept value: the mean over seeds, with its
    Student-t 95% interval when there are several), a JSON table and a bar chart of the means."""
    groups: dict = {}
    for row in rows:
        for family in row["families"]:
            groups.setdefault((row["modality"], family, row[factor] if factor else "default"), []).append(row)
    summary, series, shown = [], {}, []
    for (modality, family, value), members in groups.items():
        label = f"{modality}/{family}" + (f"/{factor}={value}" if factor else "")
        entry = {"modality": modality, "family": family, factor or "configuration": value,
                 "seeds": [r["seed"] for r in members]}
        for metric in ("test_accuracy", "best_val_accuracy", "clean_test_accuracy", "ort_test_accuracy"):
            values = [r[f"{family}_{metric}"] for r in members if r.get(f"{family}_{metric}") is not None]
            if not values:
                continue
            mean, low, high = seed_interval(values)
            entry.update({metric: mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high,
                          f"{metric}_per_seed": values})
            name = f"{metric}/{label}".replace("=", "_")
            mlflow.log_metric(name, mean)
            if len(values) > 1:
                mlflow.log_metrics({f"{name}/ci_low": low, f"{name}/ci_high": high})
        summary.append(entry)
        one = members[0] if len(members) == 1 else None  # one seed: the interval of its test samples
        low, high = ((one.get(f"{family}_test_accuracy_ci_low"), one.get(f"{family}_test_accuracy_ci_high")) if one
                     else (entry.get("test_accuracy_ci_low"), entry.get("test_accuracy_ci_high")))
        shown.append({"modality": modality, "family": family, **({factor: value} if factor else {}),
                      "seeds": len(members), "test accuracy": run_summary.interval(entry.get("test_accuracy"), low,
                                                                                   high)})
        bar = family.upper() + (f" {factor}={value}" if factor else "")
        series.setdefault(bar, {})[modality] = 100 * entry.get("test_accuracy", float("nan"))
    mlflow.log_dict({"rows": summary}, "summary.json")
    run_summary.headline("Test accuracy, % [95% interval: over seeds; of the test samples for one seed] (best-"
                         "validation weights)", shown)
    harness.log_result_table([result_row(row, family, command) for row in rows for family in row["families"]])
    modalities = list(dict.fromkeys(r["modality"] for r in summary))
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "summary.png"
        plots.grouped_bars(modalities, {k: [v.get(m) for m in modalities] for k, v in series.items()}, png,
                           ylabel="test accuracy (%)",
                           title=f"{command}: test accuracy, mean over seeds (best-validation weights)")
        mlflow.log_artifact(str(png))
