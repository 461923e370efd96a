"""The suite's one-page report: what the two studies found and what this suite's runs measured.

``build_report(uris, name, out_dir)`` reads finished runs from one or more MLflow stores and
writes ``<out_dir>/<name>.md`` with its PNG figures in ``<out_dir>/<name>/``. Each section reads
metrics by name from a small declarative table below, so a renamed metric is a one-line change;
a section whose benchmark has no finished run says which command to run.
"""

import datetime
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from snnbench import plots
from snnbench.commands import command_line
from snnbench.errors import SnnbenchError
from snnbench.runstore import FoundRun, RunStore

# The reference studies' figures (the only ones the report cites).
CONVERSION_REFERENCE = dict(dnn=0.9132, snn=0.8767, text=(
    "Reference study: 784-256-10 MLP on MNIST, Adam lr 2e-4, 3 epochs: "
    "DNN 91.32% -> converted SNN 87.67%."))
MULTIMODAL_REFERENCE = dict(snn=0.999, text=(
    "Reference study: the multimodal SNN reaches ~99.9% at every model size (S, S/2, S/3), reported as best validation accuracy."))

DEVICE_TAG = "snnbench.device"  # the device a run actually used (its 'device' param may say 'auto')

# Model settings a multimodal sweep holds fixed (shown beside its table; the swept one is left out).
MODEL_PARAMS = ("size", "hidden_layers", "neuron", "beta", "reset", "steps", "encoding", "readout", "noise_std",
                "noise_position", "noise_mode")
MODALITY_ORDER = ("image", "audio", "multimodal")

# Params shown as each section's scale (those a run logged; others are skipped).
SCALE_PARAMS = ("profile", "seed", "arch", "epochs", "train_limit", "test_limit", "test_images", "steps", "snn_steps",
                "rate_scale", "n_trials", "val_samples",
                "threads", "warmup", "repeats")


# --- conversion study --------------------------------------------------------------------------

def _number(params: dict, key: str, default: float) -> float:
    try:
        return float(params.get(key, default))
    except ValueError:
        return float("nan")


def reference_mlp(params: dict) -> bool:
    """A run on the reference study's network (the trained MLP, not a CNN or a given .onnx file)."""
    return params.get("arch", "mlp") == "mlp" and not params.get("onnx_model")


def tuned_settings(params: dict) -> bool:
    """A convert run given per-layer settings: a parameters file or a tune study's best."""
    return bool(params.get("params_json") or params.get("study_name"))


def reference_conversion(params: dict) -> bool:
    """A convert run that keeps the ONNX weights and biases as they are (the reference study's)."""
    return (reference_mlp(params) and _number(params, "rate_scale", 1) == 1 and _number(params, "gain", 1) == 1
            and _number(params, "bias_scale", 1) == 1 and not tuned_settings(params))


def hand_scaled(params: dict) -> bool:
    return reference_mlp(params) and not reference_conversion(params) and not tuned_settings(params)


@dataclass(frozen=True)
class ConversionRow:
    label: str
    experiment: str
    dnn_metric: str
    snn_metric: str
    where: object = None       # predicate on the run's params (None: any run)
    steps_param: str = "steps"
    test_param: str = "test_images"
    detail_params: tuple = ("rate_scale", "gain", "bias_scale", "neuron")  # shown in the 'settings' column


CONVERSION_ROWS = (
    ConversionRow("untuned (ONNX weights as they are)", "convert", "dnn_accuracy", "snn_accuracy",
                  reference_conversion),
    ConversionRow("hand-scaled (firing-rate / gain scaling)", "convert", "dnn_accuracy", "snn_accuracy", hand_scaled),
    ConversionRow("tuned settings (--params-json / --study-name)", "convert", "dnn_accuracy", "snn_accuracy",
                  lambda p: reference_mlp(p) and tuned_settings(p), detail_params=("params_json", "study_name")),
    ConversionRow("untuned, at the Optuna study's settings", "tune_conversion", "dnn_test_accuracy",
                  "snn_test_accuracy_untuned", reference_mlp, detail_params=("neuron",)),
    ConversionRow("Optuna-tuned", "tune_conversion", "dnn_test_accuracy", "snn_test_accuracy_tuned", reference_mlp,
                  detail_params=("n_trials", "sampler", "second_objective")),
)
CONVERSION_CURVE = ("accuracy_at_steps", CONVERSION_ROWS[:3])  # convert metric logged with step = time steps
CONVERSION_COMMANDS = ("convert --rate-scale 1", "convert", "tune")


# --- multimodal study --------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    experiment: str      # also its snnbench command
    title: str
    x_param: str | None  # child-run param that varies along the x axis (None: one configuration)
    x_label: str
    modality_param: str = "modality"
    metrics: dict = field(default_factory=lambda: {"DNN": "dnn_test_accuracy", "SNN": "snn_test_accuracy"})
    reference: bool = False  # draw the reference study's multimodal SNN figure
    # metrics: series label -> child-run metric; tables and figures show test accuracy unless a label says


WITH_VALIDATION = {"DNN test": "dnn_test_accuracy", "SNN test": "snn_test_accuracy",
                   "DNN best val": "dnn_best_val_accuracy", "SNN best val": "snn_best_val_accuracy"}
NOISY = {"DNN": "dnn_test_accuracy", "SNN": "snn_test_accuracy",
         "DNN clean": "dnn_clean_test_accuracy", "SNN clean": "snn_clean_test_accuracy"}

SWEEPS = (
    Sweep("multimodal", "One configuration (test and best validation accuracy)", None, "configuration",
          metrics=WITH_VALIDATION),
    Sweep("size_sweep", "Accuracy vs model size", "size", "model size", metrics=WITH_VALIDATION, reference=True),
    Sweep("noise_level", "Accuracy vs noise level", "noise_std", "noise std", metrics=NOISY),
    Sweep("noise_position", "Accuracy vs noise position", "noise_position", "noise position", metrics=NOISY),
    Sweep("reset_sweep", "Accuracy vs reset mechanism", "reset", "reset"),
    Sweep("neuron_sweep", "Accuracy vs neuron model", "neuron", "neuron model"),
    Sweep("timestep_sweep", "Accuracy vs time steps", "steps", "time steps"),
)


# --- noise sweep and throughput (tables logged as artifacts) -----------------------------------

@dataclass(frozen=True)
class NoiseTable:
    experiment: str = "noise_sweep"
    artifact: str = "noise_sweep_table.json"
    value: str = "accuracy"          # averaged over noise seeds
    clean: str = "clean_accuracy"
    x: str = "std"
    curve: tuple = ("family", "model", "modality", "position")  # one table row / plotted line each
    panels: tuple = ("modality", "position")
    clean_position: str = "none"     # rows of the clean (noise-free) evaluation


NOISE_SWEEP = NoiseTable()


@dataclass(frozen=True)
class ThroughputTable:
    experiment: str = "throughput"
    artifact: str = "throughput.json"
    # markdown column -> (table columns, format): one column, or (low, high) shown as a range
    columns: tuple = (("backend", ("backend",), "text"), ("steps", ("steps",), "steps"),
                      ("batch", ("batch_size",), "text"),
                      ("samples/s (median)", ("samples_per_s_median",), "rate"),
                      ("samples/s (IQR)", ("samples_per_s_q25", "samples_per_s_q75"), "rate"),
                      ("ms/batch (median)", ("latency_ms_median",), "ms"),
                      ("ms/batch (min–max)", ("latency_ms_min", "latency_ms_max"), "ms"))
    machine_tags: tuple = ("machine.cpu_model", "machine.cpu_usable", "machine.load_avg_1min", "machine.torch_threads",
                           "machine.tensorflow_threads", "machine.gpu", "snnbench.device")


THROUGHPUT = ThroughputTable()


# --- rendering helpers -------------------------------------------------------------------------

def pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def scale_line(runs: list) -> str:
    """'Scale: profile=quick, epochs=1 ... Runs: `id` ...' for the runs a section used."""
    parts = []
    for run in runs:
        shown = ", ".join([f"{k}={run.params[k]}" for k in SCALE_PARAMS if k in run.params]
                          + [f"device={run.tags[DEVICE_TAG]}"] * (DEVICE_TAG in run.tags))
        benchmark = run.tags.get("snnbench.benchmark", "")
        parts.append(f"`{run.id}` ({benchmark}{'; ' + shown if shown else ''})")
    return "Runs: " + "; ".join(parts) + "."


def unreadable(run: FoundRun, artifact: str) -> list:
    return [f"_Run `{run.id}` has no readable `{artifact}` with the expected columns (artifacts at "
            f"`{run.run.info.artifact_uri}`); copy its artifacts beside its store or rerun "
            f"`snnbench {run.tags.get('snnbench.benchmark', '')}`._", ""]


def missing(command: str) -> list:
    return [f"_No runs yet: run `snnbench {command}`._", ""]


@dataclass
class Context:
    store: RunStore
    figures: Path           # folder of this report's PNGs
    link_prefix: str        # how the markdown refers to that folder
    used: list = field(default_factory=list)  # runs whose commands head the report

    def figure(self, filename: str) -> tuple:
        return self.figures / filename, f"{self.link_prefix}/{filename}"

    def use(self, run: FoundRun):
        if run.id not in {r.id for r in self.used}:
            self.used.append(run)


# --- sections ----------------------------------------------------------------------------------

def conversion_section(ctx: Context) -> list:
    lines = ["## Conversion study: DNN vs converted SNN (MNIST)", "", CONVERSION_REFERENCE["text"],
             "Rows: the newest run of each variant on the trained 784-256-10 MLP.", ""]
    rows, runs, found = [], [], []
    for spec in CONVERSION_ROWS:
        run = ctx.store.latest(spec.experiment, where=lambda r, s=spec: s.snn_metric in r.metrics
                               and (s.where is None or s.where(r.params)))
        if run is None:
            continue
        dnn, snn = run.metrics.get(spec.dnn_metric), run.metrics[spec.snn_metric]
        loss = "–" if dnn is None else f"{100 * (dnn - snn):.2f}"
        detail = ", ".join(f"{k}={run.params[k]}" for k in spec.detail_params if run.params.get(k)) or "–"
        rows.append([spec.label, detail, run.params.get(spec.steps_param, "–"), run.params.get(spec.test_param, "–"),
                     pct(dnn), pct(snn), loss, f"`{run.id[:8]}`"])
        found.append((spec, dnn, snn))
        if run.id not in {r.id for r in runs}:
            runs.append(run)
        ctx.use(run)
    if not rows:
        return lines + [f"_No runs yet: run `snnbench {c}`._" for c in CONVERSION_COMMANDS] + [""]
    ref = CONVERSION_REFERENCE
    rows.append(["reference study", "–", "–", "–", pct(ref["dnn"]), pct(ref["snn"]),
                 f"{100 * (ref['dnn'] - ref['snn']):.2f}", "–"])
    lines += markdown_table(["variant", "settings", "steps", "test images", "DNN accuracy", "SNN accuracy",
                             "loss (pp)", "run"], rows) + [""]
    groups = [spec.label.split(" (")[0].replace(", at the Optuna study's settings", " (tune)") for spec, _, _ in found]
    bars = {"DNN": [None if d is None else 100 * d for _, d, _ in found] + [100 * ref["dnn"]],
            "SNN": [100 * s for _, _, s in found] + [100 * ref["snn"]]}
    path, link = ctx.figure("conversion_accuracy.png")
    plots.grouped_bars(groups + ["reference study"], bars, path, ylabel="test accuracy (%)",
                       title="DNN vs converted SNN")
    lines += [f"![DNN vs converted SNN]({link})", ""]
    lines += curve_figure(ctx)
    return lines + [scale_line(runs), ""]


def curve_figure(ctx: Context) -> list:
    metric, specs = CONVERSION_CURVE
    series = {}
    for spec in specs:
        run = ctx.store.latest(spec.experiment, where=lambda r, s=spec: metric in r.metrics
                               and (s.where is None or s.where(r.params)))
        if run is not None:
            history = run.history(metric)
            series["SNN " + spec.label.split(" (")[0]] = ([s for s, _ in history], [100 * v for _, v in history])
            if spec.dnn_metric in run.metrics:
                series.setdefault("DNN", ([s for s, _ in history], [100 * run.metrics[spec.dnn_metric]] * len(history)))
    if not series:
        return []
    path, link = ctx.figure("conversion_accuracy_vs_steps.png")
    plots.line_panels({"converted MLP": series}, path, xlabel="simulation time steps", ylabel="test accuracy (%)",
                      title="SNN accuracy vs time steps", logx=True,
                      reference=(100 * CONVERSION_REFERENCE["snn"], "reference study SNN"))
    return [f"![SNN accuracy vs time steps]({link})", ""]


def sweep_section(ctx: Context, sweep: Sweep) -> list:
    lines = [f"### {sweep.title}", ""]
    parent = ctx.store.latest(sweep.experiment)
    children = ctx.store.children(parent) if parent else []
    points = {}  # (modality, family) -> {x: accuracy}
    for child in children:
        x = child.param(sweep.x_param) if sweep.x_param else "default"
        modality = child.param(sweep.modality_param, "all")
        for family, metric in sweep.metrics.items():
            if metric in child.metrics and x is not None:
                points.setdefault((modality, family), {})[x] = child.metrics[metric]
    if not points:
        return lines + missing(sweep.experiment)
    ctx.use(parent)
    xs = list(dict.fromkeys(x for series in points.values() for x in series))  # the order they ran in
    if all(isinstance(x, (int, float)) for x in xs):
        xs.sort()
    modalities = sorted({m for m, _ in points}, key=lambda m: (MODALITY_ORDER + (m,)).index(m))
    fixed = ", ".join(f"{k}={parent.params[k]}" for k in MODEL_PARAMS if k in parent.params and k != sweep.x_param)
    lines += [f"Fixed settings: {fixed}." if fixed else "", ""]
    families = [f for f in sweep.metrics if any((m, f) in points for m in modalities)]
    header = [sweep.x_label] + [f"{f} {m}" for m in modalities for f in families]
    rows = [[x] + [pct(points.get((m, f), {}).get(x)) for m in modalities for f in families] for x in xs]
    if sweep.reference:
        header.append("SNN multimodal, reference study")
        rows = [row + [f"~{100 * MULTIMODAL_REFERENCE['snn']:.1f}%"] for row in rows]
    lines += markdown_table(header, rows) + [""]
    panels = {m: {f: _xy(points[(m, f)], xs) for f in families if (m, f) in points} for m in modalities}
    categorical = not all(isinstance(x, (int, float)) for x in xs)
    path, link = ctx.figure(f"{sweep.experiment}.png")
    reference = (100 * MULTIMODAL_REFERENCE["snn"], "reference multimodal SNN") if sweep.reference else None
    if len(xs) == 1:
        plots.grouped_bars(modalities, {f: [100 * points[(m, f)][xs[0]] if (m, f) in points else None
                                            for m in modalities] for f in families},
                           path, ylabel="accuracy (%)", title=sweep.title)
    else:
        plots.line_panels(panels, path, xlabel=sweep.x_label, ylabel="test accuracy (%)", title=sweep.title,
                          categorical=categorical, reference=reference, reference_panels=("multimodal",))
    lines += [f"![{sweep.title}]({link})", ""]
    return lines + [scale_line([parent]), ""]


def _xy(series: dict, xs: list) -> tuple:
    kept = [x for x in xs if x in series]
    return kept, [100 * series[x] for x in kept]


def multimodal_section(ctx: Context) -> list:
    lines = ["## Multimodal study: snntorch SNN vs DNN on image, audio and image+audio", "",
             MULTIMODAL_REFERENCE["text"], ""]
    for sweep in SWEEPS:
        lines += sweep_section(ctx, sweep)
    return lines


def logged_table(ctx: Context, experiment: str, artifact: str, needed: set):
    """(run, table, None) for the newest run of ``experiment`` and its table artifact, or
    (run, None, lines saying why there is no usable table)."""
    run = ctx.store.latest(experiment)
    if run is None:
        return None, None, missing(experiment)
    ctx.use(run)
    table = run.table(artifact)
    if table is None or table.empty or not needed <= set(table.columns):
        return run, None, unreadable(run, artifact)
    return run, table, None


def noise_section(ctx: Context) -> list:
    spec = NOISE_SWEEP
    title = "Noise sweep: DNN (ONNX Runtime) vs Nengo SNN vs snntorch SNN"
    lines = [f"## {title}", "", "Test accuracy under Gaussian noise (mean over noise seeds); the same draws for "
             "every family. Position: input, pre (a hidden layer's input current) or post (its output).", ""]
    run, table, problem = logged_table(ctx, spec.experiment, spec.artifact, {spec.value, spec.x, *spec.curve})
    if problem:
        return lines + problem
    noisy = table[table["position"] != spec.clean_position]
    means = noisy.groupby([*spec.curve, spec.x], sort=False)[spec.value].mean().unstack(spec.x)
    means = means[sorted(means.columns)]
    clean = noisy.groupby(list(spec.curve), sort=False)[spec.clean].first() if spec.clean in noisy else None
    header = list(spec.curve) + ["clean"] + [f"std {x:g}" for x in means.columns]
    rows = [list(key) + [pct(clean[key] if clean is not None else None)] + [pct(v) for v in values]
            for key, values in zip(means.index, means.values)]
    lines += markdown_table(header, rows) + [""]
    panels = {}
    for key, values in zip(means.index, means.values):
        fields = dict(zip(spec.curve, key))
        panel = " / ".join(str(fields[c]) for c in spec.panels)
        label = " ".join(str(fields[c]) for c in spec.curve if c not in spec.panels)
        kept = [(x, 100 * v) for x, v in zip(means.columns, values) if v == v]
        panels.setdefault(panel, {})[label] = ([x for x, _ in kept], [v for _, v in kept])
    path, link = ctx.figure("noise_sweep.png")
    plots.line_panels(panels, path, xlabel="noise std", ylabel="test accuracy (%)", title=title, logx=False)
    lines += [f"![{title}]({link})", ""]
    return lines + [scale_line([run]), ""]


def _format(value, kind: str) -> str:
    if kind == "steps":
        return "–" if value == 0 else str(value)
    if kind == "rate":
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    if kind == "ms":
        return f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    return str(value)


def throughput_section(ctx: Context) -> list:
    spec = THROUGHPUT
    title = "Inference throughput: ORT DNN vs converted SNN (nengo-dl, nengo) vs snntorch"
    lines = [f"## {title}", "", "The conversion study's MLP on every backend; samples per second and latency per "
             "batch over timed repeats after warm-up (median, interquartile range, min–max). Steps = SNN "
             "time steps (the DNN has none). The nengo reference simulator runs one sample at a time and "
             "is timed on a smaller grid.", ""]
    run, table, problem = logged_table(ctx, spec.experiment, spec.artifact,
                                       {c for _, cols, _ in spec.columns for c in cols})
    if problem:
        return lines + problem
    host = ", ".join(f"{t.split('.', 1)[1]}={run.tags[t]}" for t in spec.machine_tags if t in run.tags)
    lines += [f"Machine: {host}." if host else "", ""]
    rows = []
    for record in table.to_dict("records"):
        rows.append([" – ".join(_format(record[c], kind) for c in cols) for _, cols, kind in spec.columns])
    lines += markdown_table([label for label, _, _ in spec.columns], rows) + [""]
    path, link = ctx.figure("throughput.png")
    plots.throughput_plot(table.to_dict("records"), path, tuple(dict.fromkeys(table["backend"])))
    lines += [f"![{title}]({link})", ""]
    failed = run.tags.get("failed_backends")
    if failed:
        lines += [f"Backends that failed in this run: {failed}.", ""]
    return lines + [scale_line([run]), ""]


SECTIONS = (conversion_section, multimodal_section, noise_section, throughput_section)


# --- the report --------------------------------------------------------------------------------

def header(name: str, uris: list, ctx: Context, prefer: str) -> list:
    lines = [f"# snnbench report: {name}", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from "
             + ", ".join(f"`{u}`" for u in uris) + ". Each section uses the newest finished run of its benchmark"
             + (" (a full-profile one when there is one)" if prefer == "full" else "") + ".", ""]
    commits = sorted({r.tags.get("snnbench.git_commit", "unknown") for r in ctx.used})
    lines += [f"Code: git commit {', '.join(f'`{c}`' for c in commits)}.", "",
              "Commands that produced it (rebuilt from each run's logged parameters):", "", "```sh"]
    several = len(uris) > 1
    for run in ctx.used:
        command = command_line(run.tags.get("snnbench.benchmark") or run.run.info.run_name, run.params)
        lines.append(f"MLFLOW_TRACKING_URI={run.uri} {command}" if several else command)
    report = ["snnbench", "report", "--name", name] + [w for u in uris for w in ("--tracking-uri", u)]
    report += ["--prefer", prefer] if prefer != "full" else []
    lines += [" ".join(report), "```", ""]
    return lines


def build_report(uris: list, name: str, out_dir: Path, prefer: str = "full") -> Path:
    """Write ``out_dir/name.md`` and ``out_dir/name/*.png``; returns the markdown's path.
    Each section uses the newest matching finished run (``prefer='full'``: the newest full-profile
    one when there is one)."""
    store = RunStore(uris, prefer_full=prefer == "full")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(store, Path(tmp) / name, name)
        body = [line for section in SECTIONS for line in section(ctx)]
        if not ctx.used:
            raise SnnbenchError(f"no finished snnbench runs in {', '.join(uris)}; run a benchmark first "
                                "(e.g. `snnbench reproduce --profile quick`) or pass the right --tracking-uri")
        out_dir.mkdir(parents=True, exist_ok=True)
        figures = out_dir / name
        shutil.rmtree(figures, ignore_errors=True)
        if ctx.figures.exists():
            shutil.copytree(ctx.figures, figures)
        markdown = out_dir / f"{name}.md"
        markdown.write_text("\n".join(header(name, store.uris, ctx, prefer) + body))
    return markdown
