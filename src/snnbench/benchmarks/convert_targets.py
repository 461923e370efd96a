"""Where the converted network runs, beside ``snnbench convert``'s ONNX Runtime and nengo-dl:

* ``--target nengo-loihi``: also on nengo-loihi's Loihi emulator (engine ``loihi-emulator``,
  :mod:`snnbench.engines.loihi`), on the same test images, scored by the same harness; its row
  joins the result table, its metrics are logged as ``loihi_*`` (accuracy with its 95% interval,
  spikes, energy per device) and its core utilization as ``loihi/utilization.txt``;
* ``--nir-out FILE``: the spiking network written as a NIR graph
  (:mod:`snnbench.conversion.nir_export`), logged as the artifact ``nir/<name>``;
* every run: the energy per sample of the DNN and the SNN on each device
  (:mod:`snnbench.evaluation.energy`) as ``dnn_energy_*`` / ``snn_energy_*`` metrics.
"""

from snnbench.benchmarks.options import auto, require

TARGETS = ("nengo-dl", "nengo-loihi")


def add_arguments(group):
    group.add_argument("--target", choices=TARGETS, default="nengo-dl",
                       help="nengo-loihi: also run the SNN on nengo-loihi's Loihi emulator (fixed-point weights, "
                            "Loihi's non-leaky neuron, core limits)")
    group.add_argument("--loihi-warmup", type=auto(int), default=None,
                       help="nengo-loihi: steps before the readout window (auto: one per on-chip layer)")
    group.add_argument("--loihi-test-limit", type=int, default=0,
                       help="nengo-loihi: first N of the test images on the emulator, 0 = all of them")
    group.add_argument("--nir-out", default="", help="write the SNN as a NIR graph to this file (logged too)")


def check(args):
    require(args.loihi_warmup is None or args.loihi_warmup >= 0, "--loihi-warmup must be >= 0 steps")
    require(args.loihi_test_limit >= 0, "--loihi-test-limit must be >= 0 (0 = all)")
    require(args.target == "nengo-loihi" or (args.loihi_warmup is None and not args.loihi_test_limit),
            "--loihi-warmup and --loihi-test-limit go with --target nengo-loihi")


def energy_metrics(prefix: str, row: dict) -> dict:
    from snnbench.evaluation.energy import DEVICES, column

    return {f"{prefix}_{column(d)}": row[column(d)] for d in DEVICES if row.get(column(d)) is not None}


def evaluate_loihi(converted, layers, sim, x, y, keys: dict, args) -> dict:
    """The SNN on the Loihi emulator: its result row, metrics and core utilization."""
    import time

    from snnbench import engines
    from snnbench.evaluation.harness import score

    if args.loihi_test_limit:
        x, y = x[:args.loihi_test_limit], y[:args.loihi_test_limit]
    model = engines.build("loihi-emulator", converted, {"layers": layers, "sim": sim, "warmup": args.loihi_warmup})
    started = time.perf_counter()
    logits = model.predict(x)
    seconds = time.perf_counter() - started
    row = score(model, logits, y, model.last_activity, **keys)
    activity = model.last_activity
    model.close()
    metrics = {"loihi_accuracy": row["accuracy"], "loihi_accuracy_ci_low": row["accuracy_ci_low"],
               "loihi_accuracy_ci_high": row["accuracy_ci_high"], "loihi_test_images": len(y),
               "loihi_warmup_steps": model.warmup, "loihi_throughput_ips": len(y) / seconds,
               "loihi_spikes_per_sample": activity.spikes / max(activity.samples, 1),
               "loihi_synaptic_acs_per_sample": row["effective_acs_per_sample"],
               "loihi_spikes_per_neuron_per_step": row["spikes_per_neuron_per_step"],
               **energy_metrics("loihi", row)}
    return {"row": row, "metrics": metrics, "utilization": model.utilization}


def run_targets(args, converted, layers, sim, test, keys, dnn: dict, snn: dict) -> list:
    """Log the energy, Loihi and NIR results of a convert run; the extra result rows."""
    import mlflow

    mlflow.log_metrics({**energy_metrics("dnn", dnn["row"]), **energy_metrics("snn", snn["row"])})
    rows = []
    if args.target == "nengo-loihi":
        loihi = evaluate_loihi(converted, layers, sim, test.x, test.y, keys, args)
        mlflow.log_metrics(loihi["metrics"])
        mlflow.log_text("\n".join(loihi["utilization"]) + "\n", "loihi/utilization.txt")
        rows.append(loihi["row"])
        m = loihi["metrics"]
        print(f"loihi-emulator: {100 * m['loihi_accuracy']:.2f}% [95% CI {100 * m['loihi_accuracy_ci_low']:.2f}-"
              f"{100 * m['loihi_accuracy_ci_high']:.2f}] on {m['loihi_test_images']} images "
              f"({sim.steps} steps after {m['loihi_warmup_steps']} warm-up)")
    if args.nir_out:
        from snnbench.conversion.nir_export import write_nir

        path = write_nir(converted, layers, sim, args.nir_out)
        mlflow.log_artifact(str(path), "nir")
        print(f"NIR graph written to {path}")
    return rows
