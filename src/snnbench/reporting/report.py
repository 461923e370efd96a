"""The suite's one-page report: what the two studies found and what this suite's runs measured.

``build_report(uris, name, out_dir)`` reads finished runs from one or more MLflow stores and
writes ``<out_dir>/<name>.md`` with its PNG figures in ``<out_dir>/<name>/``; a section whose
benchmark has no finished run says which command to run.
"""

import datetime
import shutil
import tempfile
from pathlib import Path

from snnbench.benchmarks import claims
from snnbench.benchmarks.multimodal_grid import STUDY_DOCUMENT, results_document, study_report
from snnbench.engines import LOIHI_EMULATOR, NENGO_SNN, ORT_DNN
from snnbench.errors import StorageError
from snnbench.evaluation import plots
from snnbench.evaluation.energy import DEVICES
from snnbench.reporting.claims_section import claims_lines, pooled_study_runs, study_document
from snnbench.reporting.commands import command_line
from snnbench.reporting.context import (Context, dnn_and_snn, latest_conversion, loss_points, markdown_table, missing,
                                        number, pct, results, scale_line, unreadable, with_interval)
from snnbench.reporting.robustness_section import robustness_lines
from snnbench.reporting.steps_section import steps_lines
from snnbench.tracking.runstore import RunStore, local_store

# The reference studies' figures (the only ones the report cites).
CONVERSION_DNN, CONVERSION_SNN = 0.9132, 0.8767
CONVERSION_REFERENCE = ("Reference study: 784-256-10 MLP on MNIST, Adam lr 2e-4, 3 epochs: "
                        "DNN 91.32% -> converted SNN 87.67%.")
MULTIMODAL_REFERENCE = ("Reference study: the multimodal SNN reaches ~99.9% at every model size (S, S/2, S/3), "
                        "reported as best validation accuracy.")
METHODS = ("reference", "calibrated", "corrected", "tuned")  # snnbench convert --method (auto runs one of them)
OTHER_ARCHS = ("cnn", "resnet")  # snnbench convert --arch: the conversion of convolutional graphs
TRAINING_FREE = ("calibrated", "corrected")  # the methods that set the neurons from training images alone
STUDY_COMMAND = "snnbench multimodal_study --profile full --seeds 3 --device cuda --tf32 true"


def _magnitude(value) -> str:
    """3 significant digits below 100, else a whole number with thousands separators."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


# The throughput table: markdown column -> (table columns, format); two columns are shown as a range.
THROUGHPUT_COLUMNS = (("backend", ("backend",), str), ("steps", ("steps",), lambda v: "–" if v == 0 else str(v)),
                      ("batch", ("batch_size",), str),
                      ("samples/s (median)", ("samples_per_s_median",), _magnitude),
                      ("samples/s (IQR)", ("samples_per_s_q25", "samples_per_s_q75"), _magnitude),
                      ("ms/batch (median)", ("latency_ms_median",), _magnitude),
                      ("ms/batch (min–max)", ("latency_ms_min", "latency_ms_max"), _magnitude),
                      ("accuracy of what was timed", ("accuracy",), pct))
LOIHI_ENGINES = {ORT_DNN: "ONNX Runtime (DNN)", NENGO_SNN: "nengo-dl (SNN)",
                 LOIHI_EMULATOR: "Loihi emulator (SNN)"}
MACHINE_TAGS = ("machine.cpu_model", "machine.cpu_usable", "machine.load_avg_1min", "machine.torch_threads",
                "machine.tensorflow_threads", "machine.gpu", "snnbench.device")


def conversion_section(ctx: Context) -> list:
    lines = ["## Conversion study: DNN (ONNX Runtime) vs converted SNN (nengo-dl), MNIST", "",
             CONVERSION_REFERENCE,
             "Methods (`snnbench convert --method`): `reference` is the study's conversion (LIF, gain 1, the ONNX "
             "biases, rate scale 1); `calibrated` sets each layer's firing-rate scale from a percentile of its "
             "activations on training images (IF neurons, reset by subtraction); `corrected` (the default `auto` "
             "where it applies) then takes each layer's mean error out for each step count, on training images; "
             "`tuned` is the Optuna study's best setting, chosen on validation images. Test accuracy on the MNIST test set with "
             "its 95% Wilson interval; loss = DNN - SNN.", ""]
    rows, series, runs, dnn = [], {}, [], None
    for method in METHODS:
        run = latest_conversion(ctx.store, method=method)
        if run is None:
            lines += [f"_No `{method}` conversion yet: run `snnbench convert --method {method}`._", ""]
            continue
        records, problem = results(run)
        if problem:
            lines += problem
            continue
        study = run.params.get("study_name")
        tune = study and ctx.store.latest("tune_conversion", where=lambda r: r.params.get("study_name") == study)
        if tune:
            ctx.use(tune)  # the study this setting came from: its command heads the report too
        ctx.use(run)
        runs.append(run)
        dnn, snn = dnn_and_snn(records)
        rows += [[method, r["steps"], with_interval(r), with_interval(dnn), loss_points(dnn, r),
                  number(r.get("spikes_per_neuron_per_step")), number(r.get("effective_acs_per_sample")),
                  f"`{run.id[:8]}`"] for r in snn]
        series[f"SNN, {method}"] = ([r["steps"] for r in snn], [100 * r["accuracy"] for r in snn])
    if not rows:
        return lines
    rows.append(["reference study", "–", pct(CONVERSION_SNN), pct(CONVERSION_DNN),
                 f"{100 * (CONVERSION_DNN - CONVERSION_SNN):.2f}", "–", "–", "–"])
    lines += markdown_table(["method", "steps", "SNN accuracy [95% CI]", "DNN accuracy [95% CI]", "loss (pp)",
                             "spikes / neuron / step", "ACs / sample", "run"], rows) + [""]
    steps = sorted({s for xs, _ in series.values() for s in xs})
    series["DNN (ONNX Runtime)"] = (steps, [100 * dnn["accuracy"]] * len(steps))
    path, link = ctx.figure("conversion_accuracy_vs_steps.png")
    plots.line_panels({"784-256-10 MLP": series}, path, xlabel="simulation time steps", ylabel="test accuracy (%)",
                      title="Converted SNN accuracy vs time steps", logx=True,
                      reference=(100 * CONVERSION_SNN, "reference study SNN"))
    lines += [f"![Converted SNN accuracy vs time steps]({link})", "",
              "Activity columns are measured at each run's `--steps` (blank at the other step counts of its curve).",
              ""]
    return lines + [scale_line(runs), ""] + other_networks(ctx)


def other_networks(ctx: Context) -> list:
    """The calibrated and corrected conversions of the project's CNNs, by time steps, with the rate-mode error."""
    rows, runs = [], []
    for arch in OTHER_ARCHS:
        for method in TRAINING_FREE:
            run = latest_conversion(ctx.store, arch, method=method)
            if run is None:
                continue
            records, problem = results(run)
            if problem:
                rows.append([arch, method] + ["–"] * 6)
                continue
            ctx.use(run)
            runs.append(run)
            dnn, snn = dnn_and_snn(records)
            rows += [[arch, method, r["steps"], with_interval(r), with_interval(dnn), loss_points(dnn, r),
                      number(run.metrics.get("rate_equivalence_max_abs_err")), f"`{run.id[:8]}`"] for r in snn]
    if not rows:
        return []
    lines = ["### Convolutional networks", "",
             "`cnn`: conv-avgpool-conv-avgpool-dense on flat input; `resnet`: an image-shaped (N,1,28,28) export "
             "with MaxPool (the exact route: a tree of pairwise maxes as extra spiking layers), a residual Add and a "
             "Concat. Rate-mode error: max |logit difference| between the non-spiking (ReLU-rate) Nengo network and "
             "ONNX Runtime.", ""]
    lines += markdown_table(["network", "method", "steps", "SNN accuracy [95% CI]", "DNN accuracy [95% CI]",
                             "loss (pp)", "rate-mode error", "run"], rows) + [""]
    return lines + [scale_line(runs), ""]


def user_models_section(ctx: Context) -> list:
    """Every user's model converted (``convert --onnx-model``): the newest run of each model and data
    set, a row each, with the data set it ran on and how the normalised graph agrees with the file."""
    runs = {}
    for run in ctx.store.finished("convert"):
        if run.params.get("onnx_model"):
            runs.setdefault((run.params["onnx_model"], run.params.get("dataset", "mnist")), run)
    if not runs:
        return []
    rows, used = [], []
    for (model, dataset), run in runs.items():
        records, problem = results(run)
        if problem:
            continue
        ctx.use(run)
        used.append(run)
        dnn, snn = dnn_and_snn(records)
        name = run.tags.get("dataset", dataset)
        rows += [[f"`{model.rsplit('/', 1)[-1]}`", name, r["steps"], with_interval(dnn), with_interval(r),
                  loss_points(dnn, r), number(run.metrics.get("prepared_class_agreement")),
                  number(run.metrics.get("rate_equivalence_max_abs_err")), f"`{run.id[:8]}`"] for r in snn]
    if not rows:
        return []
    lines = ["## Your models", "",
             "Each ONNX file given to `convert --onnx-model` (newest run per file and data set), converted by the "
             "method of its run on its data set's test split. Agreement: the share of test samples on which the "
             "normalised graph and the file predict the same class.", ""]
    lines += markdown_table(["model", "data set", "steps", "DNN accuracy [95% CI]", "SNN accuracy [95% CI]",
                             "loss (pp)", "agreement", "rate-mode error", "run"], rows) + [""]
    return lines + [scale_line(used), ""]


def multimodal_section(ctx: Context) -> list:
    """The whole study grid under the newest ``multimodal_study`` run's validation protocol, every finished
    run of its settings pooled as the claims pool them (each configuration's seed once): each of the
    study's experiments as a table and a figure (snnbench.benchmarks.multimodal_grid)."""
    run = ctx.store.latest("multimodal_study")
    if run is None:
        return ["## Multimodal study", "", f"_No runs yet: run `{STUDY_COMMAND}` (on a GPU)._", ""]
    document = study_document(run)
    if document is None:
        return ["## Multimodal study", ""] + unreadable(run, STUDY_DOCUMENT)
    pooled = [(r, study_document(r)) for r in pooled_study_runs(ctx, run.params.get("validation"))]
    pooled = [(r, d) for r, d in pooled if d is not None] or [(run, document)]
    rows, _ = claims.pooled([d["runs"] for _, d in pooled])
    # the newest run's settings and stack speeds; the training time of every run pooled
    meta = {**document["meta"], "train_seconds": sum(d["meta"].get("train_seconds", 0.0) for _, d in pooled)}
    for used, _ in pooled:
        ctx.use(used)
    markdown = study_report(results_document(rows, meta), ctx.figures, f"{ctx.link_prefix}/")
    return [markdown, "", MULTIMODAL_REFERENCE, "", scale_line([r for r, _ in pooled]), ""]


NOISE_CURVE = ("engine", "model", "modality", "noise_position")  # one table row / plotted line each


def noise_section(ctx: Context) -> list:
    title = "Noise sweep: DNN (ONNX Runtime) vs converted Nengo SNN vs snntorch SNN"
    lines = [f"## {title}", "", "Test accuracy under Gaussian noise, the same draws for every engine, in the units of "
             "the activation they stand for. Position: input, pre (a hidden layer's input current) or post (its "
             "output). Cells: accuracy (%) averaged over noise seeds, then the mean over model seeds with its "
             "t-interval (one model seed: the Wilson interval). Gaps: DNN minus SNN accuracy on the same samples "
             "and draws, a paired bootstrap over samples (95%).", ""]
    run = ctx.store.latest("noise_sweep")
    if run is None:
        return lines + missing("noise_sweep")
    ctx.use(run)
    cells, gaps = run.table("noise_cells.json"), run.table("paired_gaps.json")
    if cells is None or cells.empty:
        return lines + unreadable(run, "noise_cells.json")
    cells = cells.to_dict("records")
    noisy = [c for c in cells if c["noise_position"] != "none"]
    clean = {tuple(c[k] for k in NOISE_CURVE[:3]): c for c in cells if c["noise_position"] == "none"}
    stds = sorted({c["noise_std"] for c in noisy})
    rows, panels = [], {}
    for key in dict.fromkeys(tuple(c[k] for k in NOISE_CURVE) for c in noisy):
        by_std = {c["noise_std"]: c for c in noisy if tuple(c[k] for k in NOISE_CURVE) == key}
        base = clean.get(key[:3])
        rows.append(list(key) + [with_interval(base) if base else "–"]
                    + [with_interval(by_std[s]) if s in by_std else "" for s in stds])
        kept = [s for s in stds if s in by_std]
        panels.setdefault(f"{key[2]} / {key[3]}", {})[f"{key[0]} {key[1]}"] = (
            kept, [100 * by_std[s]["accuracy"] for s in kept])
    lines += markdown_table(list(NOISE_CURVE) + ["clean"] + [f"std {s:g}" for s in stds], rows) + [""]
    if gaps is not None and not gaps.empty:
        lines += ["Paired differences (DNN minus SNN, points [95% interval]; repeats = model seeds x noise seeds):", ""]
        gap_rows = [[g["dnn"], g["snn"], g["model"], g["modality"], g["noise_position"], f"{g['noise_std']:g}",
                     f"{g['gap_pp']:+.2f} [{g['ci_low_pp']:+.2f}, {g['ci_high_pp']:+.2f}]", str(g["repeats"])]
                    for g in gaps.to_dict("records")]
        lines += markdown_table(["DNN", "SNN", "model", "modality", "position", "std", "gap", "repeats"], gap_rows)
        lines += [""]
    path, link = ctx.figure("noise_sweep.png")
    plots.line_panels(panels, path, xlabel="noise std", ylabel="test accuracy (%)", title=title, logx=False)
    lines += [f"![{title}]({link})", ""]
    return lines + [scale_line([run]), ""]


def where_section(ctx: Context) -> list:
    """The converted network on ONNX Runtime (the DNN), nengo-dl and nengo-loihi's Loihi emulator, with
    accuracy, spikes and energy per sample on each device, from ``convert --target nengo-loihi`` runs."""
    lines = ["## Where the converted network runs: ONNX Runtime, nengo-dl, the Loihi emulator", "",
             "Each network converted once (calibrated IF neurons) and run on every engine on the same test images. "
             "Energy per inference = effective MACs x E(MAC) + ACs x E(AC) + neuron updates x E(update), per device "
             "(45 nm CMOS after Horowitz 2014; CPU, GPU, Loihi and SpiNNaker2 as keras-spiking lists them). Such "
             "estimates leave out memory traffic, which dominates on real hardware: an SNN at T=5 must fire below "
             "about 6% of the time to beat an 8-bit ANN (Yan et al. 2024). Spikes: per neuron per step (the DNN's "
             "column is its share of nonzero ReLU outputs).", ""]
    runs = []
    for arch in ("mlp", "cnn"):
        run = latest_conversion(ctx.store, arch, target="nengo-loihi")
        table = run.table("results.json") if run else None
        if table is None or table.empty:
            continue
        ctx.use(run)
        runs.append(run)
        rows = [[arch.upper(), LOIHI_ENGINES[r["engine"]], str(int(r["n"])), str(r["steps"]), with_interval(r),
                 number(r.get("spikes_per_neuron_per_step"))]
                + [number(r.get(f"energy_{device}_joules_per_sample")) for device in DEVICES]
                for r in table.to_dict("records") if r["engine"] in LOIHI_ENGINES]
        lines += markdown_table(["network", "engine", "test images", "steps", "accuracy [95% CI]", "spikes"]
                                + [f"J/sample, {device}" for device in DEVICES], rows) + [""]
    if not runs:
        return lines + ["_No runs yet: run `snnbench convert --target nengo-loihi` (add `--arch cnn` for the CNN)._",
                        ""]
    return lines + [scale_line(runs), ""]


def throughput_section(ctx: Context) -> list:
    title = "Inference throughput: ORT DNN vs converted SNN (nengo-dl, nengo) vs snntorch"
    lines = [f"## {title}", "", "The conversion study's MLP on every backend; samples per second and latency per "
             "batch over timed repeats after warm-up (median, interquartile range, min–max). Steps = SNN "
             "time steps (the DNN has none). The nengo reference simulator runs one sample at a time and "
             "is timed on a smaller grid.", ""]
    run = ctx.store.latest("throughput")
    if run is None:
        return lines + missing("throughput")
    ctx.use(run)
    table = run.table("throughput.json")
    if table is None or table.empty or not {c for _, cols, _ in THROUGHPUT_COLUMNS for c in cols} <= set(table):
        return lines + unreadable(run, "throughput.json")
    host = ", ".join(f"{t.split('.', 1)[1]}={run.tags[t]}" for t in MACHINE_TAGS if t in run.tags)
    lines += [f"Machine: {host}." if host else "", ""]
    records = table.to_dict("records")
    rows = [[" – ".join(form(record[c]) for c in cols) for _, cols, form in THROUGHPUT_COLUMNS]
            for record in records]
    lines += markdown_table([label for label, _, _ in THROUGHPUT_COLUMNS], rows) + [""]
    path, link = ctx.figure("throughput.png")
    plots.throughput_plot(records, path, tuple(dict.fromkeys(table["backend"])))
    lines += [f"![{title}]({link})", ""]
    failed = run.tags.get("failed_backends")
    if failed:
        lines += [f"Backends that failed in this run: {failed}.", ""]
    return lines + [scale_line([run]), ""]


SECTIONS = (conversion_section, steps_lines, user_models_section, multimodal_section, claims_lines, noise_section,
            robustness_lines, where_section, throughput_section)


# --- the report --------------------------------------------------------------------------------

def store_label(uri: str) -> str:
    """A store named so that anyone can use the name: relative to the working directory where it
    lies below it, else by its file name alone (never a path of the machine the report was made on)."""
    local = local_store(uri)
    if local is None:
        return uri  # a tracking server's URL
    scheme, path = local[0], local[1].resolve()
    try:
        return scheme + str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return scheme + path.name


def header(name: str, uris: list, ctx: Context, prefer: str) -> list:
    labels = {u: store_label(u) for u in uris}
    lines = [f"# snnbench report: {name}", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from "
             + ", ".join(f"`{label}`" for label in labels.values()) + ". Each section uses the newest finished run "
             "of its benchmark" + (" (a full-profile one when there is one)" if prefer == "full" else "") + ".", ""]
    commits = {r.id: r.tags.get("snnbench.git_commit", "unknown") for r in ctx.used}
    unclean = sorted(rid for rid, c in commits.items() if c.endswith("+dirty") or c == "unknown")
    lines += [f"Code: git commit {', '.join(f'`{c}`' for c in sorted(set(commits.values())))}."
              + (f" Runs not made from a clean commit: {', '.join(f'`{r[:8]}`' for r in unclean)}." if unclean
                 else " Every run comes from a clean commit."), "",
              "Commands that produced it (rebuilt from each run's logged parameters):", "", "```sh"]
    several = len(uris) > 1
    for run in ctx.used:
        command = command_line(run.tags.get("snnbench.benchmark") or run.run.info.run_name, run.params)
        lines.append(f"MLFLOW_TRACKING_URI={labels[run.uri]} {command}" if several else command)
    report = ["snnbench", "report", "--name", name, "--tracking-uri", ",".join(labels.values())]
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
            raise StorageError(f"no finished snnbench runs in {', '.join(uris)}; run a benchmark first "
                                "(e.g. `snnbench reproduce --profile quick`) or pass the right --tracking-uri")
        out_dir.mkdir(parents=True, exist_ok=True)
        figures = out_dir / name
        shutil.rmtree(figures, ignore_errors=True)
        if ctx.figures.exists():
            shutil.copytree(ctx.figures, figures)
        markdown = out_dir / f"{name}.md"
        markdown.write_text("\n".join(header(name, store.uris, ctx, prefer) + body))
    return markdown
