"""The report's "where it runs" table: the converted network on ONNX Runtime (the DNN), nengo-dl
and nengo-loihi's Loihi emulator, with accuracy, spikes and energy per sample on each device
(snnbench.evaluation.energy), from ``snnbench convert --target nengo-loihi`` runs."""

from snnbench.evaluation.energy import DEVICES
from snnbench.reporting.context import markdown_table, number, scale_line, with_interval

ENGINES = {"ort-dnn": "ONNX Runtime (DNN)", "nengo-snn": "nengo-dl (SNN)", "loihi-emulator": "Loihi emulator (SNN)"}
TITLE = "Where the converted network runs: ONNX Runtime, nengo-dl, the Loihi emulator"


def where_lines(ctx) -> list:
    lines = [f"## {TITLE}", "",
             "Each network converted once (calibrated IF neurons) and run on every engine on the same test images. "
             "Energy per inference = effective MACs x E(MAC) + ACs x E(AC) + neuron updates x E(update), per device "
             "(45 nm CMOS after Horowitz 2014; CPU, GPU, Loihi and SpiNNaker2 as keras-spiking lists them). Such "
             "estimates leave out memory traffic, which dominates on real hardware: an SNN at T=5 must fire below "
             "about 6% of the time to beat an 8-bit ANN (Yan et al. 2024). Spikes: per neuron per step (the DNN's "
             "column is its share of nonzero ReLU outputs).", ""]
    runs = []
    for arch in ("mlp", "cnn"):
        run = ctx.store.latest("convert", where=lambda r, a=arch: r.params.get("target") == "nengo-loihi"
                               and r.params.get("arch") == a)
        table = run.table("results.json") if run else None
        if table is None or table.empty:
            continue
        ctx.use(run)
        runs.append(run)
        rows = []
        for record in table.to_dict("records"):
            if record["engine"] not in ENGINES:
                continue
            energies = [number(record.get(f"energy_{device}_joules_per_sample")) for device in DEVICES]
            rows.append([arch.upper(), ENGINES[record["engine"]], str(int(record["n"])), str(record["steps"]),
                         with_interval(record), number(record.get("spikes_per_neuron_per_step"))] + energies)
        lines += markdown_table(["network", "engine", "test images", "steps", "accuracy [95% CI]", "spikes"]
                                + [f"J/sample, {device}" for device in DEVICES], rows) + [""]
    if not runs:
        return lines + ["_No runs yet: run `snnbench convert --target nengo-loihi` (add `--arch cnn` for the CNN)._",
                        ""]
    return lines + [scale_line(runs), ""]
