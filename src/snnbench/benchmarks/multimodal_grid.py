"""The multimodal study's grid at its own scale: its experiments and trainings, its evaluations, its
results document and the report section built from it (``snnbench multimodal_study`` runs it).

The study varies one factor at a time around a reference SNN (size S, LIF, soft reset, 4 steps):
``size`` (S, S/2, S/3, DNN and SNN); ``noise_level`` / ``noise_position`` (evaluation noise of std 0.1
and 5 before (``pre``) or after (``post``) each hidden activation, size-S models trained without noise);
``reset`` (soft, hard), ``neuron`` (LIF, IF), ``timesteps`` (4, 8, 16; SNN, size S). That is 30
trainings per seed for the three modalities, each scored on the whole test split clean and under the
four noises. Summaries are means over seeds with a Student-t 95% interval.
"""

import itertools
import math
from collections import namedtuple
from pathlib import Path

import numpy as np

from snnbench.engines import SUITE
from snnbench.data import MODALITIES
from snnbench.peak_rates import PEAK_RATES
from snnbench.evaluation import harness
from snnbench.evaluation.metrics import accuracy_interval, seed_interval
from snnbench.models.multimodal import SIZES, ModelSpec
from snnbench.noise import NoiseSpec

REFERENCE_SNN = dict(family="snn", size="S", neuron="lif", reset="soft", steps=4)
NOISE_STDS, NOISE_POSITIONS = (0.1, 5.0), ("pre", "post")  # the evaluation noises: before / after each activation
NOISES = {f"{position}/{std:g}": NoiseSpec(std, position) for std in NOISE_STDS for position in NOISE_POSITIONS}
CLEAN = "clean"
STUDY_DOCUMENT = "study.json"    # the study's results: trainings, per-experiment means over seeds
CLAIMS_DOCUMENT = "claims.json"  # its claims checked under the run's protocol (snnbench.benchmarks.claims)
# The study's own figures recorded here (reporting.MULTIMODAL_REFERENCE): the multimodal SNN's best
# validation accuracy, ~99.9% at every size.
STUDY_VALUES = {("size", "multimodal", "snn", size, "best_val_accuracy"): 0.999 for size in SIZES}


# factor: the ModelSpec field that varies, or "noise" (the evaluation noise)
Experiment = namedtuple("Experiment", "name title factor values families metrics", defaults=[("test_accuracy",)])


EXPERIMENTS = (
    Experiment("size", "Accuracy vs model size", "size", tuple(SIZES), ("dnn", "snn"),
               ("test_accuracy", "best_val_accuracy")),
    Experiment("noise_level", "Accuracy vs evaluation noise std (before / after the activation)", "noise",
               tuple(NOISES), ("dnn", "snn")),
    Experiment("noise_position", "Accuracy vs noise position (std 0.1 and 5)", "noise",
               ("pre/0.1", "post/0.1", "pre/5", "post/5"), ("dnn", "snn")),
    Experiment("reset", "Accuracy vs reset mechanism", "reset", ("soft", "hard"), ("snn",)),
    Experiment("neuron", "Accuracy vs neuron model", "neuron", ("lif", "if"), ("snn",)),
    Experiment("timesteps", "Accuracy vs time steps", "steps", (4, 8, 16), ("snn",)),
)
EXPERIMENT = {experiment.name: experiment for experiment in EXPERIMENTS}


def study_specs(modalities=MODALITIES) -> list[ModelSpec]:
    """Every model the study trains (30 for the three modalities), reference settings first."""
    specs = []
    for modality in modalities:
        for size in SIZES:
            specs += [ModelSpec(modality, "dnn", size), ModelSpec(modality, "snn", size)]
        specs += [ModelSpec(modality, "snn", reset="hard"), ModelSpec(modality, "snn", neuron="if"),
                  ModelSpec(modality, "snn", steps=8), ModelSpec(modality, "snn", steps=16)]
    return specs


def run_row(spec: ModelSpec, seed: int, summary: dict, scores: dict) -> dict:
    """One training's row: its settings, seed, training summary and test scores. ``scores`` maps
    ``clean`` and each :data:`NOISES` key to (correct, n)."""
    row = {**{k: getattr(spec, k) for k in ("modality", "family", "size", "neuron", "reset", "steps")}, "seed": seed,
           "best_val_accuracy": summary["best_val_accuracy"], "best_epoch": summary["best_epoch"],
           "epochs_trained": len(summary["history"]),
           **{k: summary[k] for k in ("parameter_count", "hidden_width", "n_train", "n_val")},
           "val_accuracy_history": [h["val_accuracy"] for h in summary["history"]]}
    for name, (correct, n) in scores.items():
        interval = accuracy_interval(correct, n)
        row[f"test/{name}"] = {"accuracy": interval["accuracy"], "correct": int(correct), "n": int(n),
                               "ci_low": interval["accuracy_ci_low"], "ci_high": interval["accuracy_ci_high"]}
    return row


def _matches(row: dict, experiment: Experiment, value) -> bool:
    """Whether a run belongs to an experiment's point (the reference settings elsewhere)."""
    settings = dict(REFERENCE_SNN, family=row["family"])
    if experiment.factor in ("size", "reset", "neuron", "steps"):
        settings[experiment.factor] = value
    if row["family"] == "dnn":
        return row["size"] == settings["size"]
    return all(row[k] == v for k, v in settings.items())


def summarise(rows: list[dict]) -> list[dict]:
    """Per experiment, modality, family, value and metric: mean over seeds and its 95% interval."""
    summary = []
    for experiment in EXPERIMENTS:
        for modality, family, value in itertools.product(MODALITIES, experiment.families, experiment.values):
            runs = [r for r in rows if r["modality"] == modality and r["family"] == family
                    and _matches(r, experiment, value)]
            if not runs:
                continue
            test = f"test/{value if experiment.factor == 'noise' else CLEAN}"
            for metric in experiment.metrics:
                values = [r[metric] if metric == "best_val_accuracy" else r[test]["accuracy"] for r in runs]
                mean, low, high = seed_interval(values)
                summary.append({"experiment": experiment.name, "modality": modality, "family": family, "value": value,
                                "metric": metric, "mean": mean, "ci_low": low, "ci_high": high,
                                "n_seeds": len(values), "seeds": [r["seed"] for r in runs], "values": values,
                                "study": STUDY_VALUES.get((experiment.name, modality, family, value, metric))})
    return summary


def results_document(rows: list[dict], meta: dict) -> dict:
    """One row per training (:func:`run_row`) and the per-experiment summary (:func:`summarise`)."""
    return {"meta": meta, "runs": rows, "summary": summarise(rows)}


def result_row(row: dict, noise: str) -> harness.ResultRow:
    """One training's test score under one evaluation noise as a result row
    (snnbench.evaluation.harness; accuracy with its Wilson interval)."""
    test = row[f"test/{noise}"]
    spec = NOISES.get(noise, NoiseSpec())
    snn = row["family"] == "snn"
    model = f"{row['family']} {row['size']}" + (f" {row['neuron']} {row['reset']}" if snn else "")
    key = harness.ResultKey("multimodal_study", SUITE[row["family"]], model, row["modality"], "", row["steps"] if snn else 1,
                            spec, row["seed"])
    measured = {"n": test["n"], "accuracy": test["accuracy"], "accuracy_ci_low": test["ci_low"],
                "accuracy_ci_high": test["ci_high"], "parameter_count": row["parameter_count"]}
    return harness.result_row(key, measured, best_val_accuracy=row["best_val_accuracy"])


# --- the report section ------------------------------------------------------------------------

def _series(experiment: Experiment, entries: list[dict], modality: str):
    """(family, metric, {value: summary entry}) of one modality, each non-empty one in the experiment's order."""
    for family in experiment.families:
        for metric in experiment.metrics:
            cells = {e["value"]: e for e in entries if (e["modality"], e["family"], e["metric"]) ==
                     (modality, family, metric)}
            if cells:
                yield family, metric, cells


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _cell(entry: dict | None) -> str:
    """Mean [interval], the interval shown within [0, 100] (an accuracy cannot leave it)."""
    if entry is None:
        return "–"
    if entry["n_seeds"] < 2:
        return f"{_pct(entry['mean'])} (1 seed)"
    return f"{_pct(entry['mean'])} [{_pct(max(entry['ci_low'], 0.0))}, {_pct(min(entry['ci_high'], 1.0))}]"


def study_report(results: dict, figures: Path, link_prefix: str = "") -> str:
    """Markdown: one table and one figure per experiment (mean test accuracy over seeds, %, with
    its 95% t-interval; the study's value where it gave one). Figures go to ``figures``."""
    meta, summary = results["meta"], results["summary"]
    seeds = sorted({r["seed"] for r in results["runs"]})
    lines = ["## Multimodal study at its scale: mean over seeds with 95% intervals", "",
             f"{len(results['runs'])} trainings ({len(seeds)} seeds: {', '.join(map(str, seeds))}), "
             f"{meta.get('epochs')} epochs, batch {meta.get('batch_size')}, validation protocol "
             f"`{meta.get('validation')}`; trained on {meta.get('device_name', meta.get('device'))} in "
             f"{meta.get('train_seconds', float('nan')):.0f} s"
             f"{' (float32 products on TF32 units)' if meta.get('tf32') else ' (float32)'}. Cells: mean accuracy (%) "
             "over seeds [Student-t 95% interval, shown within 0-100]; each single run's Wilson interval is in the "
             "results file. The model kept is the one of best validation accuracy; the test split is read once, "
             "after training. The study's figure (~99.9%) is a best validation accuracy under its own protocol, "
             "whose validation recordings also occur in training; ours holds them out "
             f"(`{meta.get('validation')}`), so the two are not the same measurement.", ""]
    for experiment in EXPERIMENTS:
        entries = [e for e in summary if e["experiment"] == experiment.name]
        if not entries:
            continue
        lines += [f"### {experiment.title}", ""]
        header = ["modality", "family", "metric"] + [str(v) for v in experiment.values] + ["study"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for modality in MODALITIES:
            for family, metric, cells in _series(experiment, entries, modality):
                study = ", ".join(f"{v}: ~{_pct(e['study'])}" for v, e in cells.items() if e["study"] is not None)
                lines.append("| " + " | ".join([modality, family.upper(), metric.replace("_", " ")] +
                                              [_cell(cells.get(v)) for v in experiment.values] +
                                              [study or "not recorded"]) + " |")
        path = figures / f"study_{experiment.name}.png"
        plot_experiment(experiment, entries, path)
        lines += ["", f"![{experiment.title}]({link_prefix}{path.name})", ""]
    speeds = meta.get("speeds", {})
    lines += _training_cost(meta)
    if speeds:
        shared = meta.get("side_by_side") and meta.get("device", "cpu") != "cpu"
        lines += ["### Training speed per stack shape", "",
                  "Stacks trained side by side share the GPU, so their epochs take the grid's pace: these are "
                  "seconds per epoch of the whole grid, not of one stack alone." if shared else "",
                  "", "| shape | models stacked | seconds per epoch | model-epochs per second |", "|---|---|---|---|"]
        lines += [f"| {shape} | {e['models']} | {e['epoch_seconds']:.3f} | {e['model_epochs_per_s']:.1f} |"
                  for shape, entries in speeds.items() for e in entries] + [""]
    return "\n".join(lines)


def _training_cost(meta: dict) -> list[str]:
    """The grid's training time beside the time its matrix products and its optimiser's memory
    traffic need at the device's datasheet peak (snnbench.peak_rates.PEAK_RATES)."""
    entries = [e for shape in meta.get("speeds", {}).values() for e in shape if "product_flops" in e]
    if not entries or "train_seconds" not in meta:
        return []
    flops, traffic = sum(e["product_flops"] for e in entries), sum(e["optimiser_bytes"] for e in entries)
    lines = ["### Training time and what it must do", "",
             f"The stacked trainings took {meta['train_seconds']:.0f} s of training on "
             f"{meta.get('device_name', 'cpu')}. "
             f"Their matrix products come to {flops:.2e} floating-point operations (forward and backward, counted "
             f"layer by layer), and Adam reads and writes {traffic / 1e12:.2f} TB of weights, gradients and moments "
             "(28 bytes per parameter and step, in float32)."]
    peak = PEAK_RATES.get(meta.get("device_name", ""))
    if peak:
        rate = peak["tf32_flops"] if meta.get("tf32") else peak["fp32_flops"]
        lines[-1] += (f" At the device's datasheet peak, the products alone need {flops / rate:.0f} s "
                      f"({'TF32' if meta.get('tf32') else 'FP32'}, {rate / 1e12:.0f} TFLOP/s) and the optimiser's "
                      f"traffic alone {traffic / peak['memory_bytes_per_s']:.0f} s "
                      f"({peak['memory_bytes_per_s'] / 1e12:.1f} TB/s).")
    return lines + [""]


def plot_experiment(experiment: Experiment, entries: list[dict], path: Path):
    """One panel per modality: mean test accuracy per value, 95% interval bars, one series per
    family (and metric); the study's value as a cross where it gave one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODALITIES), figsize=(4.2 * len(MODALITIES), 3.4), squeeze=False)
    xs = list(range(len(experiment.values)))
    for ax, modality in zip(axes[0], MODALITIES):
        for family, metric, points in _series(experiment, entries, modality):
            kept = [(i, points[v]) for i, v in zip(xs, experiment.values) if v in points]
            means = np.array([100 * e["mean"] for _, e in kept])
            low = np.array([100 * (max(e["ci_low"], 0.0) if e["n_seeds"] > 1 else e["mean"]) for _, e in kept])
            high = np.array([100 * (min(e["ci_high"], 1.0) if e["n_seeds"] > 1 else e["mean"]) for _, e in kept])
            label = family.upper() + ("" if metric == "test_accuracy" else " best val")
            ax.errorbar([i for i, _ in kept], means, yerr=[means - low, high - means], capsize=3,
                        marker="o" if family == "snn" else "s", linestyle="-" if family == "snn" else "--", label=label)
            study = [(i, 100 * e["study"]) for i, e in kept if e["study"] is not None]
            if study:
                ax.scatter(*zip(*study), marker="x", color="black", zorder=5, label=f"study ({label})")
        ax.set_xticks(xs, [str(v) for v in experiment.values])
        ax.set_title(modality)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy (%)")
    fig.suptitle(experiment.title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
