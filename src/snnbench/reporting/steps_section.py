"""The report's "by time steps" section: the conversion's accuracy curve at 1, 2, 4, 8, 16 and 32
steps for the MLP, the CNN and the ResNet-style network, one row per conversion method, from
``snnbench convert --arch A --method M --steps-list 1,2,4,8,16,32`` runs (any of the stores), and
for each network a user brought (``--onnx-model FILE``, named by the file's stem; the full test
set only). Cells: the SNN's test accuracy with its 95% Wilson interval, and its loss against the
DNN on the same images with the paired interval where the run logged it.
"""

from pathlib import PurePath

from snnbench.engines import NENGO_SNN, ORT_DNN
from snnbench.evaluation import plots
from snnbench.reporting.context import (interval, loss_points, markdown_table, number, results, scale_line,
                                        with_interval)

TITLE = "Conversion by time steps: MLP, CNN and ResNet-style network"
STEPS = (1, 2, 4, 8, 16, 32)
NETWORKS = {"mlp": "MLP (784-256-10)", "cnn": "CNN", "resnet": "ResNet-style"}
METHODS = ("calibrated", "corrected")
RATES = ("uniform", "balanced", "validated")  # --rates; runs from before the option fired every layer at one rate
TARGETS = "targets: ResNet-style <= 3 points at 4 steps and <= 1 at 8; CNN <= 0.3 at 4; MLP <= 0.20 at 4"


def _curve_steps(run) -> set:
    steps = run.param("steps_list", [])
    return set(steps if isinstance(steps, list) else []) & set(STEPS)


def network_of(run) -> str:
    """The project's architecture (``mlp``, ``cnn``, ``resnet``), or the stem of the user's ONNX file."""
    onnx_model = run.params.get("onnx_model")
    return PurePath(onnx_model.replace("\\", "/")).stem if onnx_model else run.params.get("arch", "mlp")


def _users_on_whole_test_set(run) -> bool:
    return bool(run.params.get("onnx_model")) and run.param("test_limit", None) == 0


def user_networks(store) -> list:
    """The user's ONNX networks converted on the whole test set, oldest first."""
    runs = [r for r in store.finished("convert") if _users_on_whole_test_set(r)]
    return list(dict.fromkeys(network_of(r) for r in reversed(runs)))


def choose_run(store, arch: str, method: str, rates: str = "uniform"):
    """The newest finished (full-profile first) convert run of ``arch`` (an architecture or a user
    network's name, :func:`network_of`), ``method`` and ``rates``, among those covering the most of
    :data:`STEPS` (a user network's: on the whole test set), so that a later run at a few step counts
    does not hide a whole curve; None if there is none."""
    def matching(r):
        return (network_of(r) == arch and r.params.get("method") == method
                and r.params.get("rates", "uniform") == rates
                and (not r.params.get("onnx_model") if arch in NETWORKS else _users_on_whole_test_set(r)))

    runs = [r for r in store.finished("convert") if matching(r)]
    if store.prefer_full:
        runs = [r for r in runs if r.params.get("profile") == "full"] or runs
    return max(runs, key=lambda r: len(_curve_steps(r))) if runs else None  # the newest of the longest


def loss_cell(snn: dict, dnn: dict) -> str:
    """'0.51 [0.32, 0.70]': DNN minus SNN in points, paired interval when logged."""
    return interval(loss_points(dnn, snn), snn.get("paired_loss_ci_low"), snn.get("paired_loss_ci_high"))


def _by_steps(snn: dict, cell) -> list:
    """``cell(row)`` at each of :data:`STEPS`, '–' where the run has no row."""
    return [cell(snn[s]) if s in snn else "–" for s in STEPS]


def steps_lines(ctx) -> list:
    lines = [f"## {TITLE}", "",
             "Each network's DNN (ONNX Runtime) and its converted SNN (nengo-dl, IF neurons) on the same MNIST test "
             "images, by simulation time steps. `calibrated`: firing-rate scales (one per layer, or one per channel: "
             "`--scales`) from a percentile of the activations on training images; `corrected`: calibrated, then "
             "each layer's expected per-channel error taken out of its bias and initial membrane potential for each "
             "step count (after Li et al. 2021, light SNN Calibration; training images only). Rates (`--rates`): "
             "`uniform`, every layer fires `--target-rate` spikes per step at its percentile; `balanced`, the same "
             "expected spikes shared out between the layers; `validated`, per step count the one of the two that "
             "classifies more validation images (held out of the training set) correctly. Accuracy with its 95% "
             "Wilson interval; loss = DNN minus SNN in points with its 95% paired-bootstrap interval over the test "
             f"images ({TARGETS}).", ""]
    accuracy_rows, loss_rows, spike_rows, runs, series = [], [], [], [], {}
    networks = {**NETWORKS, **{name: f"`{name}` (user's ONNX)" for name in user_networks(ctx.store)}}
    for arch, network in networks.items():
        for method, rates in [(m, r) for m in METHODS for r in RATES]:
            run = choose_run(ctx.store, arch, method, rates)
            if run is None:
                continue
            records, problem = results(run)
            if problem:
                lines += problem
                continue
            ctx.use(run)
            runs.append(run)
            dnn = next(r for r in records if r["engine"] == ORT_DNN)
            snn = {int(r["steps"]): r for r in records if r["engine"] == NENGO_SNN}
            scales = run.params.get("scales", "layer")  # runs from before --scales: one per layer
            label, link = [network, f"{method} ({scales} scales, {rates} rates)"], f"`{run.id[:8]}`"
            accuracy_rows.append([*label, with_interval(dnn), *_by_steps(snn, with_interval), link])
            loss_rows.append([*label, *_by_steps(snn, lambda r: loss_cell(r, dnn)), link])
            spike_rows.append([*label, *_by_steps(snn, lambda r: number(r.get("spikes_per_neuron_per_step"))), link])
            shown = [s for s in STEPS if s in snn]
            panel = series.setdefault(network.replace("`", ""),
                                      {"DNN (ONNX Runtime)": (list(STEPS), [100 * dnn["accuracy"]] * len(STEPS))})
            panel[f"SNN, {method}, {rates} rates"] = (shown, [100 * snn[s]["accuracy"] for s in shown])
    if not runs:
        return lines + ["_No runs yet: run `snnbench convert --profile full --arch mlp --method corrected "
                        "--steps-list 1,2,4,8,16,32` (and `--arch cnn`, `--arch resnet --lr 0.002`)._", ""]
    steps = [f"{s} steps" for s in STEPS]
    lines += ["Test accuracy [95% CI]:", ""]
    lines += markdown_table(["network", "method", "DNN"] + steps + ["run"], accuracy_rows) + [""]
    lines += ["Loss against the DNN on the same images, points [95% paired interval]:", ""]
    lines += markdown_table(["network", "method"] + steps + ["run"], loss_rows) + [""]
    lines += ["Spikes per neuron per step, the cost of each point (measured at every step count by `corrected` runs, "
              "at the run's `--steps` only by `calibrated` ones):", ""]
    lines += markdown_table(["network", "method"] + steps + ["run"], spike_rows) + [""]
    path, link = ctx.figure("conversion_by_steps.png")
    plots.line_panels(series, path, xlabel="simulation time steps", ylabel="test accuracy (%)",
                      title="Converted SNN accuracy by time steps", logx=True)
    return lines + [f"![Converted SNN accuracy by time steps]({link})", "", scale_line(runs), ""]
