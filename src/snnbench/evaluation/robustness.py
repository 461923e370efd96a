"""Robustness metrics over one model's accuracy-vs-noise :class:`Curve` (the same numbers for every
family, model and noise position), and the sweep's plot."""

from dataclasses import dataclass

import numpy as np

from snnbench.errors import ConfigError


@dataclass(frozen=True)
class Curve:
    stds: np.ndarray        # sorted noise std values
    accuracy: np.ndarray    # mean accuracy at each std (fraction, 0..1)
    clean_accuracy: float   # accuracy without noise

    @classmethod
    def from_points(cls, stds, accuracy, clean_accuracy: float) -> "Curve":
        stds, accuracy = np.asarray(stds, float), np.asarray(accuracy, float)
        if stds.shape != accuracy.shape or stds.size == 0:
            raise ConfigError("a robustness curve needs one accuracy per noise std (and at least one point)")
        order = np.argsort(stds)
        return cls(stds[order], accuracy[order], float(clean_accuracy))


def area_under_curve(curve: Curve) -> float:
    """Area under accuracy vs std over the std range: the mean accuracy over the noise range (1.0 =
    perfect at every std); with a single std, the accuracy there."""
    span = curve.stds[-1] - curve.stds[0]
    return float(np.trapz(curve.accuracy, curve.stds) / span) if span else float(curve.accuracy.mean())


class NoiseTolerance:
    """Largest swept std up to which accuracy stays within ``tolerance_pp`` of clean (0 if none)."""

    def __init__(self, tolerance_pp: float = 5.0):
        self.tolerance_pp = tolerance_pp

    def __call__(self, curve: Curve) -> float:
        failed = np.flatnonzero(~(100 * (curve.clean_accuracy - curve.accuracy) <= self.tolerance_pp))
        within = curve.stds[: failed[0]] if failed.size else curve.stds
        return float(within[-1]) if within.size else 0.0


# name -> metric: clean accuracy minus accuracy at the largest std, and its mean over the swept stds,
# in percentage points
METRICS = {"auc": area_under_curve,
           "drop_at_max_std_pp": lambda c: float(100 * (c.clean_accuracy - c.accuracy[-1])),
           "mean_drop_pp": lambda c: float(100 * np.mean(c.clean_accuracy - c.accuracy)),
           "tolerated_std_5pp": NoiseTolerance(5.0)}


def summarise(curve: Curve, metrics=METRICS) -> dict:
    return {name: metric(curve) for name, metric in metrics.items()}


def plot_accuracy_vs_std(rows: list[dict], positions: list[str], path, title: str = ""):
    """A panel per (modality, noise position): accuracy vs std, a line per engine and model, error
    bars over seeds (``rows``: result rows, one per seed)."""
    from snnbench.evaluation.plots import plt, save_figure

    modalities = list(dict.fromkeys(r["modality"] for r in rows))
    fig, axes = plt.subplots(len(modalities), len(positions), figsize=(4.2 * len(positions), 3.2 * len(modalities)),
                             sharey=True, squeeze=False)
    families = list(dict.fromkeys(r["engine"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colours = {f: plt.cm.tab10(i) for i, f in enumerate(families)}
    styles = dict(zip(models, ["-", "--", ":", "-."]))
    for row, modality in enumerate(modalities):
        for ax, position in zip(axes[row], positions):
            for family in families:
                for model in models:
                    points = [r for r in rows if (r["engine"], r["model"], r["modality"], r["noise_position"]) ==
                              (family, model, modality, position)]
                    stds = sorted({r["noise_std"] for r in points})
                    if not stds:
                        continue
                    values = [[r["accuracy"] for r in points if r["noise_std"] == s] for s in stds]
                    ax.errorbar(stds, [100 * np.mean(v) for v in values], yerr=[100 * np.std(v) for v in values],
                                color=colours[family], linestyle=styles[model], marker="o", markersize=3,
                                capsize=3, label=f"{family} · {model}")
            ax.set_xscale("symlog", linthresh=0.1)
            ax.set_title(f"{modality}: noise at {position}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(modalities) - 1:
                ax.set_xlabel("noise std")
        axes[row][0].set_ylabel("accuracy (%)")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 4), fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, rect=(0, 0.06 + 0.02 * (len(handles) > 4), 1, 1))
