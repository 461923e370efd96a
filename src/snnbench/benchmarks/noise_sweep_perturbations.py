"""The noise sweep's perturbation families besides Gaussian noise (``--perturbations``, snnbench.perturbations).

Each family adds, per subject it applies to, one child per level (the quick profile: MNIST-C's own
severity, one level of each weight fault) and noise seed, tagged ``perturbation`` and ``level``. An input
corruption changes the test samples before any engine sees them (keyed by the sample's index and the
noise seed, so every engine gets the same corrupted sample); a weight fault runs the subject on a copy of
its ONNX file with perturbed weights (ONNX Runtime and the converter read the same file). A family a
subject cannot take (an image corruption on audio, a weight fault on the snntorch SNN) is left out for it,
and the parent lists what was left out and why.

The parent's tables: cells per (engine, model, modality, family, level) and paired DNN-vs-SNN gaps per
cell (as :mod:`~snnbench.benchmarks.noise_sweep_tables` computes them for noise), and a summary per engine
and family: mean accuracy and drop over the levels, and the corruption error against the DNN (the summed
errors over levels divided by the ORT DNN's, Hendrycks & Dietterich's CE with the DNN as baseline).
"""

import tempfile
from dataclasses import replace
from functools import cache
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from snnbench import perturbations
from snnbench.benchmarks import noise_sweep_tables as tables
from snnbench.benchmarks.noise_sweep_models import SweepSettings
from snnbench.engines import ORT_DNN, SNNTORCH_SNN
from snnbench.data import FeatureSet
from snnbench.errors import SnnbenchError
from snnbench.evaluation import harness
from snnbench.models.export import ONNX_FILE
from snnbench.perturbations import Target, attacks
from snnbench.tracking import summary as run_summary

CHOICES = ("all", *perturbations.names())
CELL = ("engine", "model", "modality", "perturbation", "level")
REFUSED = "perturbations_refused.txt"


def chosen(names: list) -> list:
    """The families asked for, ``all`` expanded, in the registry's order."""
    wanted = set(perturbations.names() if "all" in names else names)
    return [n for n in perturbations.names() if n in wanted]


@cache
def family(name: str):
    return perturbations.build(name)


def _others(settings: SweepSettings) -> list:
    return [n for n in settings.perturbations if n != "gaussian"]


def refusal(name: str, subject, settings: SweepSettings) -> str | None:
    """Why family ``name`` cannot be applied to ``subject`` (one line), or None."""
    from snnbench.benchmarks.noise_sweep_models import sample_shape, user_onnx

    try:
        family(name).check(Target(subject.family, sample_shape(settings, subject.modality), subject.modality,
                                  subject.model))
        if hasattr(family(name), "neuron_layers") and subject.model == "user" and subject.family != SNNTORCH_SNN:
            family(name).neuron_layers(user_onnx(settings).path)  # a user's graph: each ReLU's layer found
    except SnnbenchError as error:
        return str(error)
    return None


def children(subject, settings: SweepSettings, base: dict) -> list:
    """The subject's children of every family besides Gaussian noise that applies to it: first those that
    run the subject's own model (input corruptions, attacks), then the faults, each a model of its own (so
    the model built for the first ones serves them all)."""
    out = []
    for name in sorted(_others(settings), key=lambda n: family(n).kind in ("weights", "neurons")):
        if refusal(name, subject, settings) is None:
            out += [{**base, "position": "none", "std": 0.0, "noise_seed": settings.seed + r, "perturbation": name,
                     "level": float(level), **source_keys(name)}
                    for level in family(name).profile_levels(settings.profile) for r in range(settings.seeds)]
    return out


def source_keys(name: str) -> dict:
    """An attack's source (the model it is crafted on: dnn, snn_<surrogate>), a child's key, row and tag."""
    return {"attack_source": family(name).source} if family(name).kind == "attack" else {}


def row_keys(child: dict) -> dict:
    """A child's family and level (Gaussian noise: its std; the clean child: none, 0), an attack's source."""
    if "perturbation" in child:
        return {"perturbation": child["perturbation"], "level": child["level"], **source_keys(child["perturbation"])}
    return {"perturbation": "gaussian" if child["position"] != "none" else "none", "level": child["std"]}


def describe(child: dict) -> str:
    """The child as its run name says it."""
    if "perturbation" not in child:
        return f"{child['position']} std={child['std']:g}"
    return f"{child['perturbation']} {family(child['perturbation']).level_name}={child['level']:g}"


def weight_fault(child: dict) -> tuple | None:
    """(family, level, seed) of a child whose weights or neurons a fault changes, else None."""
    name = child.get("perturbation")
    if name and family(name).kind in ("weights", "neurons"):
        return name, child["level"], child["noise_seed"]
    return None


def faulty_model(unit, fault: tuple):
    """The unit's subject under ``fault``: the snntorch SNN as a faulty copy of its module; a DNN on a copy of
    its ONNX file with the fault in its weights, whose conversion is calibrated on the faulty file (a weight
    fault) or on the fault-free one (a neuron fault: the neurons fail on the chip, after conversion); spike
    deletion as the converted SNN's setting."""
    name, level, seed = fault
    subject, models = unit.subject, unit.models
    if subject.family == SNNTORCH_SNN:
        return models.model(subject, module=family(name).perturb_module(models.torch_module(subject), level, seed))
    if not hasattr(family(name), "apply"):  # spike deletion: drawn in the simulation
        return models.model(subject, **family(name).engine_settings(subject.family, level, seed))
    neurons = family(name).kind == "neurons"
    return models.model(subject, faulty_file(unit, fault), calibrated_on=models.onnx_file(subject) if neurons else None)


_FILES = {}


def faulty_file(unit, fault: tuple) -> Path:
    """The unit's subject's ONNX file with ``fault`` applied (written once per process)."""
    source = unit.models.onnx_file(unit.subject)
    key = (str(source), *fault)
    if key not in _FILES:
        name, level, seed = fault
        folder = Path(tempfile.mkdtemp(prefix="snnbench-weight-fault-"))
        inputs = {"inputs": unit.models.training_inputs(unit.subject)} if getattr(family(name), "needs_inputs",
                                                                                   False) else {}
        _FILES[key] = family(name).apply(source, folder / ONNX_FILE, level, seed, **inputs)
    return _FILES[key]


_CORRUPTED = {}


def corrupted(data: FeatureSet, child: dict, sample_shape: tuple) -> FeatureSet:
    """``data`` with the child's input corruption (the same samples for every engine), or as it is: corrupted
    once per (family, level, seed, samples) in this process and kept on disk, for every engine's child."""
    name = child.get("perturbation")
    if not name or family(name).kind != "input":
        return data
    key = (name, child["level"], child["noise_seed"], data.digest)
    if key not in _CORRUPTED:
        _CORRUPTED[key] = Path(tempfile.mkdtemp(prefix="snnbench-corrupted-")) / "x.npy"
        np.save(_CORRUPTED[key], family(name).apply(data.x, sample_shape, child["level"], child["noise_seed"]))
    return FeatureSet(np.load(_CORRUPTED[key]), data.y, data.checksums, data.origins)


_ATTACKERS, _ATTACKED = {}, {}


def attacked(data: FeatureSet, unit) -> FeatureSet:
    """``data`` crafted against the unit's attack source, or as it is: crafted once per (source model,
    family, level, seed, samples) in this process and kept on disk, so every engine that runs that model
    scores the very same arrays."""
    from snnbench.benchmarks.noise_sweep_models import sample_shape

    name, subject, models = unit.child.get("perturbation"), unit.subject, unit.models
    if not name or family(name).kind != "attack":
        return data
    attack = family(name)
    source = replace(subject, family=ORT_DNN if attack.source == "dnn" else SNNTORCH_SNN)
    key = (str(models.folder(source)), attack.source, name, unit.child["level"], unit.child["noise_seed"], data.digest)
    if key not in _ATTACKED:
        if key[:2] not in _ATTACKERS:
            if attack.source == "dnn":
                shape = sample_shape(unit.settings, subject.modality)
                encode = (lambda x: models.prepared.encode(x, shape)) if models.encodes(source) else None
                _ATTACKERS[key[:2]] = attacks.dnn_module(models.onnx_file(source), encode, int(np.prod(shape)))
            else:
                _ATTACKERS[key[:2]] = attacks.with_surrogate(models.torch_module(source), attack.surrogate)
        x = attack.craft(_ATTACKERS[key[:2]], data.x, data.y, unit.child["level"], unit.child["noise_seed"])
        _ATTACKED[key] = Path(tempfile.mkdtemp(prefix="snnbench-attack-")) / "x.npy"
        np.save(_ATTACKED[key], x)
    return FeatureSet(np.load(_ATTACKED[key]), data.y, data.checksums, data.origins)


def gaussian_rows(rows: list) -> list:
    """The clean and Gaussian-noise rows: what the noise tables and figures read."""
    return [r for r in rows if r.get("perturbation", "none") in ("none", "gaussian")]


def _as_noise(rows: list) -> list:
    """Rows with family and level in the noise tables' position and std columns (to reuse their cells and gaps)."""
    return [{**r, "noise_position": r["perturbation"], "noise_std": r["level"]} for r in rows]


def _from_noise(table: list) -> list:
    return [{**{k: v for k, v in t.items() if k not in ("noise_position", "noise_std")},
             "perturbation": t["noise_position"], "level": t["noise_std"]} for t in table]


def summary(cell_rows: list) -> list:
    """Per (engine, model, modality, family): mean accuracy and drop over its levels, and the corruption
    error against the ORT DNN of the same model and modality (None where there is none)."""
    clean = {(c["engine"], c["model"], c["modality"]): c["accuracy"] for c in cell_rows if c["perturbation"] == "none"}
    groups = {}
    for c in cell_rows:
        if c["perturbation"] != "none":
            groups.setdefault((c["engine"], c["model"], c["modality"], c["perturbation"]), {})[c["level"]] = c
    out = []
    for (engine, model, modality, name), by_level in groups.items():
        accuracy = [by_level[v]["accuracy"] for v in sorted(by_level)]
        dnn = groups.get((ORT_DNN, model, modality, name), {})
        shared = sorted(set(by_level) & set(dnn))
        dnn_errors = sum(1 - dnn[v]["accuracy"] for v in shared)
        ce = (sum(1 - by_level[v]["accuracy"] for v in shared) / dnn_errors) if shared and dnn_errors > 0 else None
        base = clean.get((engine, model, modality), float("nan"))
        out.append({"engine": engine, "model": model, "modality": modality, "perturbation": name,
                    "kind": family(name).kind, "levels": len(accuracy), "mean_accuracy": float(np.mean(accuracy)),
                    "mean_drop_pp": 100 * float(base - np.mean(accuracy)), "ce_vs_dnn": ce})
    return out


def refusals(settings: SweepSettings, subjects: list) -> list:
    return [f"{name} on {s.label}: {why}" for name in _others(settings) for s in dict.fromkeys(subjects)
            if (why := refusal(name, s, settings))]


def log_results(rows: list, settings: SweepSettings) -> None:
    """The families' cells, paired gaps and summary on the parent run (nothing for a Gaussian-only sweep)."""
    from snnbench.benchmarks.noise_sweep import subjects

    if not _others(settings):
        return
    mlflow.log_text(harness.result_table(rows).to_csv(index=False), "perturbations.csv")
    if "gaussian" not in settings.perturbations:  # the noise tables are left out: the clean rows' table
        harness.log_result_table([r for r in rows if r["perturbation"] == "none"])
    refused = refusals(settings, subjects(settings))
    if refused:
        mlflow.log_text("\n".join(refused) + "\n", REFUSED)
    chosen_rows = tables.with_correct([r for r in rows if r["perturbation"] != "gaussian"])
    if not any(r["perturbation"] != "none" for r in chosen_rows):
        return
    cell_rows = _from_noise(tables.cells(_as_noise(chosen_rows)))
    gaps = _from_noise(tables.paired_gaps(_as_noise(chosen_rows), settings.seed))
    per_family = summary(cell_rows)
    mlflow.log_table(pd.DataFrame(cell_rows), "perturbation_cells.json")
    if gaps:
        mlflow.log_table(pd.DataFrame(gaps), "perturbation_gaps.json")
    mlflow.log_table(pd.DataFrame(per_family), "perturbation_summary.json")
    metrics = {}
    for engine in dict.fromkeys(s["engine"] for s in per_family):
        for kind in ("input", "weights", "neurons", "attack"):
            mine = [s for s in per_family if s["engine"] == engine and s["kind"] == kind]
            if mine:
                metrics[f"mean_drop_pp.{kind}.{engine}"] = float(np.mean([s["mean_drop_pp"] for s in mine]))
            ces = [s["ce_vs_dnn"] for s in mine if s["ce_vs_dnn"] is not None]
            if ces and engine != ORT_DNN:
                metrics[f"mce_vs_dnn.{kind}.{engine}"] = float(np.mean(ces))
    mlflow.log_metrics(metrics)
    run_summary.headline(
        "Perturbations: mean accuracy over each family's levels, % (corruption error against the ORT DNN)",
        tables._wide(pd.DataFrame([{**s, "cell": f"{100 * s['mean_accuracy']:.1f}"
                                    + (f" ({s['ce_vs_dnn']:.2f})" if s["ce_vs_dnn"] is not None
                                       and s["engine"] != ORT_DNN else "")} for s in per_family]),
                     ["perturbation", "model", "modality"], "engine", "cell"))
    if gaps:
        largest = sorted([g for g in gaps if g["perturbation"] != "none"], key=lambda g: -abs(g["gap_pp"]))[:tables.GAPS_SHOWN * 2]
        run_summary.headline(
            "Perturbations: largest paired gaps, DNN minus SNN in points [95% interval]",
            [{"DNN": g["dnn"], "SNN": g["snn"], "model": g["model"], "modality": g["modality"],
              "perturbation": g["perturbation"], "level": f"{g['level']:g}",
              "gap": run_summary.interval(g["gap_pp"], g["ci_low_pp"], g["ci_high_pp"], scale=1, sign="+")}
             for g in largest])
