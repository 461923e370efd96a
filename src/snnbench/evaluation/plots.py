"""The report's figures: small matplotlib helpers that write one PNG each (no display needed)."""

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

STYLES = {"DNN": dict(linestyle="--", marker="s"), "SNN": dict(linestyle="-", marker="o")}


def save_figure(fig, path: Path, dpi: int = 110, rect=None) -> Path:
    """Write ``fig`` to ``path`` (laid out within ``rect``, figure fractions) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def line_panels(panels: dict, path: Path, *, xlabel: str, ylabel: str, title: str,
                logx: bool = False, logy: bool = False, categorical: bool = False, reference: tuple | None = None,
                reference_panels: tuple | None = None) -> Path:
    """One panel per key of ``panels``, each mapping a series label to (xs, ys); a label naming 'DNN'
    or 'SNN' (any case) gets that family's line style. ``reference``, (y, label), is a horizontal line
    in every panel, or only in ``reference_panels`` when given."""
    n = max(len(panels), 1)
    cols = n if n <= 3 else math.ceil(math.sqrt(n))  # 4 panels: 2 x 2
    rows = -(-n // cols)
    width = 6.0 if n == 1 else 4.2
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.4 * rows), squeeze=False, sharey=True)
    flat = list(axes.flat)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax, (panel, series) in zip(flat, panels.items()):
        order = list(dict.fromkeys(x for xs, _ in series.values() for x in xs))  # categorical x positions
        for label, (xs, ys) in series.items():
            style = next((s for k, s in STYLES.items() if k.lower() in label.lower()), dict(marker="o"))
            if "clean" in label:  # the noise-free reference of a noisy series
                style = {**style, "linestyle": ":", "alpha": 0.6}
            ax.plot([order.index(x) for x in xs] if categorical else xs, ys, label=label, **style)
        if categorical:
            ax.set_xticks(range(len(order)), [str(x) for x in order])
        if reference is not None and (reference_panels is None or panel in reference_panels):
            ax.axhline(reference[0], color="grey", linestyle=":", label=reference[1])
        if logx and not categorical:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            if len(order) <= 12:
                ax.set_xticks(sorted(order))
        if logy:
            ax.set_yscale("log")
        ax.set_title(str(panel))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def grouped_bars(groups: list, series: dict, path: Path, *, ylabel: str, title: str) -> Path:
    """One group of bars per entry of ``groups``; ``series`` maps a label to a value (or None) per group."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 + 1.5 * len(groups)), 3.4))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        kept = [(x, v) for x, v in zip(xs, values) if v is not None and v == v]  # skip None and NaN
        bars = ax.bar([x for x, _ in kept], [v for _, v in kept], width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def throughput_plot(rows: list, path: Path, backends: tuple) -> Path:
    """Samples per second against batch size, a panel per backend, a line per step count."""
    panels = {}
    order = {b: i for i, b in enumerate(backends)}
    for r in sorted(rows, key=lambda r: (order.get(r["backend"], len(order)), r["steps"], r["batch_size"])):
        label = "DNN" if r["backend"] == "ort" else f"SNN {r['steps']} steps"
        xs, ys = panels.setdefault(r["backend"], {}).setdefault(label, ([], []))
        xs.append(r["batch_size"])
        ys.append(r["samples_per_s_median"])
    return line_panels(panels, path, xlabel="batch size", ylabel="samples / s (median)",
                       title="Inference throughput", logx=True, logy=True)


def confusion_plot(matrix, title: str, path: Path) -> Path:
    """A confusion matrix (true x predicted) with its counts."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                color="white" if v > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(10), yticks=range(10))
    fig.colorbar(image, ax=ax)
    return save_figure(fig, path, dpi=120)


def steps_curve_plot(curve: dict, dnn_accuracy: float, path: Path) -> Path:
    """The SNN's accuracy by simulation time steps, the DNN's as a line."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    steps = sorted(curve)
    ax.plot(steps, [100 * curve[s] for s in steps], "o-", label="SNN (Nengo)")
    ax.axhline(100 * dnn_accuracy, color="gray", ls="--", label="DNN (ONNX Runtime)")
    ax.set(xlabel="time steps", ylabel="test accuracy (%)", title="Accuracy vs simulation time steps")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path, dpi=120)
