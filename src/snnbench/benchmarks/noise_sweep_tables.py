"""The noise sweep's results: cells over model seeds, paired DNN-vs-SNN differences, robustness.

* **Cells**: per (engine, model, modality, position, std): the accuracy averaged over noise seeds
  for each model seed, then the mean over model seeds with its Student-t 95% interval (one model
  seed: the Wilson interval of the pooled test samples).
* **Paired differences** (DNN minus SNN, in points) of each sample's correctness under the same
  draws, averaged over model and noise seeds, with a paired-bootstrap 95% interval over samples
  (:func:`snnbench.evaluation.metrics.paired_difference`). Pairs: the ORT DNN against its own
  conversion (Nengo, Loihi emulator) and against the snntorch SNN of the same modality.
* **Robustness**: AUC, drops and tolerated std of the seed-averaged accuracy-vs-std curves.
* **Headline** (printed when the run ends): clean accuracy per engine, the largest paired gaps, and
  where each curve falls (the first std more than :data:`FALL_POINTS` below clean).
"""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from snnbench.engines import ORT_DNN, NENGO_SNN, LOIHI_EMULATOR, SNNTORCH_SNN
from snnbench.benchmarks.noise_sweep_models import SweepSettings
from snnbench.evaluation import harness, robustness
from snnbench.evaluation.metrics import paired_difference, seed_interval, wilson_interval
from snnbench.tracking import summary as run_summary

CURVE = ("engine", "model", "modality", "noise_position")
CELL = (*CURVE, "noise_std")
PAIRS = ((ORT_DNN, NENGO_SNN), (ORT_DNN, SNNTORCH_SNN), (ORT_DNN, LOIHI_EMULATOR))
FALL_POINTS = 10  # a curve falls at the first std where its accuracy is more than this many points below clean
GAPS_SHOWN = 3    # the largest paired gaps (by size) the headline shows per pair of engines


def _groups(rows: list, columns) -> dict:
    """Rows by their values of ``columns``, in order of first appearance."""
    out = {}
    for r in rows:
        out.setdefault(tuple(r[c] for c in columns), []).append(r)
    return out


def cells(rows: list) -> list[dict]:
    """One cell per (engine, model, modality, position, std): mean over model seeds and its interval."""
    out = []
    for key, points in _groups(rows, CELL).items():
        seeds = sorted({r["model_seed"] for r in points})
        per_seed = [np.mean([r["accuracy"] for r in points if r["model_seed"] == s]) for s in seeds]
        mean, low, high = seed_interval(per_seed)
        if len(seeds) == 1:
            n = sum(r["n"] for r in points)
            low, high = wilson_interval(int(round(sum(r["accuracy"] * r["n"] for r in points))), int(n))
        out.append({**dict(zip(CELL, key)), "accuracy": mean, "accuracy_ci_low": low, "accuracy_ci_high": high,
                    "model_seeds": len(seeds), "noise_seeds": len({r["noise_seed"] for r in points})})
    return out


def with_correct(rows: list) -> list[dict]:
    """Each result row's columns with which samples it got right under ``correct`` (what the paired differences read)."""
    return [{**r, "correct": r.correct} for r in rows]


def paired_gaps(rows: list, seed: int = 0) -> list[dict]:
    """DNN minus SNN accuracy for every pair of engines that ran the same samples and draws."""
    by_key = {key: {(r["model_seed"], r["noise_seed"]): r for r in group} for key, group in _groups(rows, CELL).items()}
    out = []
    for (engine, model, modality, position, std), dnn in by_key.items():
        for first, second in PAIRS:
            snn = by_key.get((second, model, modality, position, std))
            if engine != first or snn is None:
                continue
            both = sorted(dnn.keys() & snn.keys())
            mean, low, high = paired_difference([dnn[k]["correct"] for k in both], [snn[k]["correct"] for k in both],
                                                seed=seed)
            out.append({"dnn": first, "snn": second, "model": model, "modality": modality, "noise_position": position,
                        "noise_std": std, "gap_pp": 100 * mean, "ci_low_pp": 100 * low, "ci_high_pp": 100 * high,
                        "repeats": len(both), "n": len(dnn[both[0]]["correct"])})
    return out


def summaries(rows: list) -> dict:
    """Robustness metrics per (family, model, modality, position), over the seed-averaged curve."""
    out = {}
    groups = _groups([r for r in rows if r["noise_position"] != "none"], CURVE)
    for key, points in sorted(groups.items()):
        stds = sorted({r["noise_std"] for r in points})
        means = [np.mean([r["accuracy"] for r in points if r["noise_std"] == s]) for s in stds]
        curve = robustness.Curve.from_points(stds, means, float(np.mean([r["clean_accuracy"] for r in points])))
        out[".".join(map(str, key))] = robustness.summarise(curve)
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.2f}" if np.isfinite(value) else "–"


def markdown(cell_rows: list, gaps: list) -> str:
    """Cells (accuracy % [95% interval]) and paired gaps (points [95% interval]) as two tables."""
    noisy = [c for c in cell_rows if c["noise_position"] != "none"]
    stds = sorted({c["noise_std"] for c in noisy})
    lines = ["| engine | model | modality | position | clean | " + " | ".join(f"std {s:g}" for s in stds) + " |",
             "|" + "---|" * (5 + len(stds))]
    clean = {tuple(c[k] for k in CURVE[:3]): c for c in cell_rows if c["noise_position"] == "none"}
    for key, group in _groups(noisy, CURVE).items():
        by_std = {c["noise_std"]: c for c in group}
        base = clean.get(key[:3])
        texts = [f"{_pct(c['accuracy'])} [{_pct(c['accuracy_ci_low'])}, {_pct(c['accuracy_ci_high'])}]"
                 if (c := by_std.get(s)) else "" for s in stds]
        lines.append(f"| {' | '.join(map(str, key))} | {_pct(base['accuracy']) if base else '–'} | "
                     + " | ".join(texts) + " |")
    lines += ["", "Paired differences, DNN minus SNN (points, 95% paired-bootstrap interval over samples):", "",
              "| DNN | SNN | model | modality | position | std | gap [95% CI] | repeats |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {g['dnn']} | {g['snn']} | {g['model']} | {g['modality']} | {g['noise_position']} | "
              f"{g['noise_std']:g} | {g['gap_pp']:+.2f} [{g['ci_low_pp']:+.2f}, {g['ci_high_pp']:+.2f}] | "
              f"{g['repeats']} |" for g in gaps]
    return "\n".join(lines)


def parent_metrics(rows: list, summary: dict, gaps: list) -> dict:
    """The few summary metrics the parent run carries (per engine: mean clean accuracy and mean
    AUC; per pair: the mean paired gap); the rest is in its tables."""
    out = {"children": len(rows), "children_reused": sum(r["reused"] for r in rows)}
    for engine in dict.fromkeys(r["engine"] for r in rows):
        clean = [r["accuracy"] for r in rows if r["engine"] == engine and r["noise_position"] == "none"]
        aucs = [s["auc"] for k, s in summary.items() if k.startswith(f"{engine}.") and np.isfinite(s["auc"])]
        out[f"clean_accuracy.{engine}"] = float(np.mean(clean))
        if aucs:
            out[f"mean_auc.{engine}"] = float(np.mean(aucs))
    for first, second in PAIRS:
        values = [g["gap_pp"] for g in gaps if (g["dnn"], g["snn"]) == (first, second)]
        if values:
            out[f"mean_gap_pp.{first}-vs-{second}"] = float(np.mean(values))
    return out


def falls_at(curve: robustness.Curve, points: float = FALL_POINTS) -> float:
    """The first swept std at which accuracy is more than ``points`` below clean (inf: at none)."""
    fallen = np.flatnonzero(~(100 * (curve.clean_accuracy - curve.accuracy) <= points))
    return float(curve.stds[fallen[0]]) if fallen.size else float("inf")


def _wide(frame: pd.DataFrame, index: list, columns: str, values: str) -> pd.DataFrame:
    """``values`` with one column per value of ``columns``, ``index`` leading (rows and columns in order of
    appearance)."""
    rows = pd.MultiIndex.from_tuples(list(dict.fromkeys(frame[index].itertuples(index=False, name=None))), names=index)
    wide = frame.pivot(index=index, columns=columns, values=values)
    wide = wide.reindex(index=rows, columns=list(dict.fromkeys(frame[columns]))).fillna("")
    return wide.reset_index().rename_axis(columns=None)


def headline(cell_rows: list, gaps: list) -> None:
    """The sweep's headline tables for the run's summary: clean accuracy per engine, the largest paired
    gaps, and where each engine's accuracy-vs-std curve falls."""
    cells_frame = pd.DataFrame(cell_rows)
    clean = cells_frame[cells_frame["noise_position"] == "none"].copy()
    clean["accuracy"] = [run_summary.interval(*v) for v in
                         clean[["accuracy", "accuracy_ci_low", "accuracy_ci_high"]].itertuples(index=False)]
    run_summary.headline("Clean accuracy, % [95% interval]", _wide(clean, ["model", "modality"], "engine", "accuracy"))

    largest = []
    for first, second in PAIRS:
        pair = [g for g in gaps if (g["dnn"], g["snn"]) == (first, second)]
        largest += sorted(pair, key=lambda g: -abs(g["gap_pp"]))[:GAPS_SHOWN]
    run_summary.headline(
        f"Largest paired gaps, DNN minus SNN in points [95% interval] (the {GAPS_SHOWN} largest of each pair)",
        [{"DNN": g["dnn"], "SNN": g["snn"], "model": g["model"], "modality": g["modality"],
          "position": g["noise_position"], "std": f"{g['noise_std']:g}",
          "gap": run_summary.interval(g["gap_pp"], g["ci_low_pp"], g["ci_high_pp"], scale=1, sign="+")}
         for g in largest])

    base = {tuple(c[k] for k in CURVE[:3]): c["accuracy"] for c in cell_rows if c["noise_position"] == "none"}
    noisy = [c for c in cell_rows if c["noise_position"] != "none" and tuple(c[k] for k in CURVE[:3]) in base]
    falls = []
    for key, group in _groups(noisy, CURVE).items():
        curve = robustness.Curve.from_points([c["noise_std"] for c in group], [c["accuracy"] for c in group],
                                             base[key[:3]])
        std = falls_at(curve)
        falls.append({**dict(zip(CURVE, key)), "falls": f"{std:g}" if np.isfinite(std) else "–"})
    if falls:
        top = max(c["noise_std"] for c in noisy)
        run_summary.headline(f"First noise std at which accuracy is more than {FALL_POINTS} points below clean, by "
                             f"noise position ('–': at no std up to {top:g})",
                             _wide(pd.DataFrame(falls), ["engine", "model", "modality"], "noise_position", "falls"))


def log_results(rows: list, settings: SweepSettings, out: Path) -> dict:
    """Tables (result rows, cells, paired gaps, robustness), markdown, plot and a few metrics on the parent."""
    out.mkdir(parents=True, exist_ok=True)
    mlflow.log_text(harness.result_table(rows).to_csv(index=False), "noise_sweep.csv")
    harness.log_result_table(rows)
    cell_rows, gaps = cells(rows), paired_gaps(with_correct(rows), settings.seed)
    mlflow.log_table(pd.DataFrame(cell_rows), "noise_cells.json")
    if gaps:
        mlflow.log_table(pd.DataFrame(gaps), "paired_gaps.json")
    mlflow.log_text(markdown(cell_rows, gaps) + "\n", "noise_sweep.md")
    robustness.plot_accuracy_vs_std([r for r in rows if r["noise_position"] != "none"], settings.positions,
                                    out / "accuracy_vs_std.png",
                                    title=f"noise_sweep ({settings.profile}, {settings.noise_mode} SNN noise)")
    mlflow.log_artifact(str(out / "accuracy_vs_std.png"))
    summary = summaries(rows)
    mlflow.log_text(json.dumps(summary, indent=1), "robustness.json")
    mlflow.log_metrics(parent_metrics(rows, summary, gaps))
    headline(cell_rows, gaps)
    return summary
