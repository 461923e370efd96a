"""``snnbench noise_sweep``: DNN (ONNX Runtime) vs converted Nengo SNN vs snntorch SNN under noise.

Every model sees the same test samples and, for a given (position, std, seed), the same Gaussian
draws (snnbench.noise conventions). One child run per (family, model, modality, position, std,
seed) plus one clean run per model; the parent logs the table, the accuracy-vs-std plot and the
robustness summary. A sweep run again with the same options resumes: finished children are
reused, not repeated.
"""

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
from tqdm import tqdm

from snnbench.evaluation import harness

from snnbench.evaluation import robustness

from snnbench.tracking import runs as tracking
from snnbench.benchmarks.options import add_common, auto, choice_list, float_list, positive, require
from snnbench.data import MODALITIES
from snnbench.noise import NOISE_MODES, NoiseSpec
from snnbench.evaluation.metrics import COLUMNS

BENCHMARK = "noise_sweep"
FAMILIES = ("ort-dnn", "nengo-snn", "snntorch-snn")
POSITIONS = ("input", "pre", "post")
DEFAULT_STDS = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

# Settings each profile fills in when an option is not given. Training: each study's own recipe
# (snnbench.training.recipes), unless --epochs / --train-limit override it for every model.
PROFILES = {"quick": dict(test_limit=500, steps=20), "full": dict(test_limit=0, steps=30)}


@dataclass(frozen=True)
class Subject:
    """One model under test: which family runs it, which trained model, on which modality."""
    family: str
    model: str       # "conversion-mlp" (the conversion study's MLP) or "multimodal" (the snntorch suite's)
    modality: str

    @property
    def label(self) -> str:
        return f"{self.family}/{self.model}/{self.modality}"


# --------------------------------------------------------------------------- command line

def add_arguments(parser, command):
    add_common(parser)
    parser.add_argument("--stds", type=float_list, default=list(DEFAULT_STDS), help="noise standard deviations")
    parser.add_argument("--positions", type=choice_list(POSITIONS), default=list(POSITIONS),
                        help="where the noise is added: input, pre (layer input current), post (layer output)")
    parser.add_argument("--families", type=choice_list(FAMILIES), default=list(FAMILIES),
                        help="ort-dnn: DNNs in ONNX Runtime; nengo-snn: the same DNNs converted to Nengo; "
                             "snntorch-snn: the multimodal suite's trained SNNs")
    parser.add_argument("--modalities", type=choice_list(MODALITIES), default=list(MODALITIES),
                        help="image (the conversion study's MLP and the suite's image nets), audio, multimodal")
    parser.add_argument("--seeds", type=positive(int), default=1, help="noise repeats (noise seeds seed .. seed+N-1)")
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default="frozen",
                        help="SNNs: frozen = one draw held for all steps (the DNN's single draw: like with "
                             "like), per_step = a fresh draw each time step (averaged away over the steps)")
    parser.add_argument("--test-limit", type=auto(int), default=None,
                        help="test samples (a fixed seeded subset), 0 = all (auto: 500 quick, all full)")
    parser.add_argument("--train-limit", type=auto(int), default=None,
                        help="training samples of every model, 0 = all (auto: each study's own recipe; conversion "
                             "MLP all, snntorch suite 2000 quick / all full)")
    parser.add_argument("--epochs", type=auto(int), default=None,
                        help="training epochs of every model (auto: each study's own recipe; conversion MLP 3, "
                             "suite 2 quick / 200 full)")
    parser.add_argument("--steps", type=auto(int), default=None,
                        help="Nengo simulation steps per sample (auto: 20 quick, 30 full)")
    parser.add_argument("--snn-steps", type=auto(int), default=None,
                        help="snntorch SNN time steps (auto: the suite's 4)")


def settings(args) -> dict:
    """The options that decide the results, every default resolved (logged as parent params)."""
    from dataclasses import asdict, replace

    from snnbench.training import recipes
    from snnbench.device import resolve_device
    from snnbench.models.multimodal import ModelSpec

    profile = PROFILES[args.profile]
    chosen = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in profile.items()}
    require(chosen["test_limit"] >= 0 and (args.train_limit or 0) >= 0,
            "--test-limit and --train-limit must be >= 0 (0 = all samples)")
    for name in ("epochs", "steps", "snn_steps"):
        value = chosen.get(name, getattr(args, name))
        require(value is None or value >= 1, f"--{name.replace('_', '-')} must be >= 1")
    require(args.stds and all(np.isfinite(s) and s >= 0 for s in args.stds),
            f"--stds must be finite numbers >= 0, got {args.stds}")
    overrides = {k: getattr(args, k) for k in ("epochs", "train_limit") if getattr(args, k) is not None}
    return {"stds": sorted(set(args.stds)), "positions": list(dict.fromkeys(args.positions)),
            "families": list(dict.fromkeys(args.families)), "modalities": list(dict.fromkeys(args.modalities)),
            "seeds": args.seeds, "noise_mode": args.noise_mode, "seed": args.seed, "profile": args.profile,
            "device": str(resolve_device(args.device)), "snn_steps": args.snn_steps or ModelSpec().steps,
            "conversion_training": asdict(replace(recipes.CONVERSION, **overrides)),
            "suite_training": asdict(replace(recipes.SUITE[args.profile], **overrides)), **chosen}


def subjects(config: dict) -> list:
    """Every (family, model, modality) the sweep evaluates, in a stable order."""
    out = []
    for family in config["families"]:
        for modality in config["modalities"]:
            if family == "snntorch-snn":
                out.append(Subject(family, "multimodal", modality))
                continue
            if modality == "image":
                out.append(Subject(family, "conversion-mlp", modality))
            out.append(Subject(family, "multimodal", modality))
    return out


def grid(subject: Subject, config: dict) -> list:
    """The child configurations of one subject: its clean run first, then the noisy ones."""
    base = {**asdict(subject), "noise_mode": config["noise_mode"]}
    clean = {**base, "position": "none", "std": 0.0, "noise_seed": config["seed"]}
    noisy = [{**base, "position": p, "std": s, "noise_seed": config["seed"] + r}
             for p in config["positions"] for s in config["stds"] for r in range(config["seeds"])]
    return [clean, *noisy]


# --------------------------------------------------------------------------- running the grid

def result_keys(child: dict, config: dict) -> dict:
    """The result-table key columns (snnbench.evaluation.harness.KEY_COLUMNS) of one child configuration."""
    steps = {"ort-dnn": 1, "nengo-snn": config["steps"], "snntorch-snn": config["snn_steps"]}[child["family"]]
    return {"benchmark": BENCHMARK, "engine": child["family"], "model": child["model"], "modality": child["modality"],
            "method": "calibrated" if child["family"] == "nengo-snn" else "", "steps": steps,
            "noise_position": child["position"], "noise_std": child["std"], "noise_mode": child["noise_mode"],
            "noise_seed": child["noise_seed"], "seed": config["seed"]}


def evaluate(model, data, child: dict) -> dict:
    """Every metric of one child configuration (the hook tests patch to interrupt a sweep)."""
    spec = NoiseSpec(child["std"], child["position"], child["noise_mode"], child["noise_seed"])
    return harness.evaluate(model, data.x, data.y, spec)


def _row(child: dict, config: dict, measured: dict, clean: float, seconds: float, run_id: str, reused: bool) -> dict:
    values = {k: measured.get(k, float("nan")) for k in COLUMNS}
    return {**result_keys(child, config), **values, "clean_accuracy": clean,
            "accuracy_drop_pp": 100 * (clean - values["accuracy"]), "eval_seconds": seconds, "reused": reused,
            "run_id": run_id}


def _finished_row(run, child: dict, config: dict) -> dict:
    m = run.data.metrics
    return _row(child, config, m, m["clean_accuracy"], m.get("eval_seconds", float("nan")), run.info.run_id, True)


def run_subject(subject: Subject, build_model: Callable[[], harness.Model], data, config: dict, done: dict,
                progress, device: str, model_id: str | None = None) -> list:
    """Evaluate (or reuse) every child of one subject; its model is built only if needed.
    Children that another invocation of the sweep holds are left for a second pass that waits
    for them (the clean child is waited for at once: the others are measured against it).
    Metrics are linked to the logged model ``model_id``."""
    children, rows, clean, model = grid(subject, config), {}, None, None
    for waiting in (False, True):
        for child in children:
            key = tracking.config_key(child)
            if key in rows:
                continue
            run = None
            if key not in done:
                name = f"{subject.label} {child['position']} std={child['std']:g} seed={child['noise_seed']}"
                with tracking.claimed_child(name, child, device=device, data_checksums=data.checksums,
                                            wait=waiting or clean is None) as run:
                    if run is not None:
                        model = model or build_model()
                        started = time.perf_counter()
                        measured = evaluate(model, data, child)
                        seconds = time.perf_counter() - started
                        reference = measured["accuracy"] if child["position"] == "none" else clean
                        row = _row(child, config, measured, reference, seconds, run.info.run_id, False)
                        logged = [*COLUMNS, "clean_accuracy", "accuracy_drop_pp", "eval_seconds"]
                        mlflow.log_metrics({k: row[k] for k in logged if np.isfinite(row[k])},
                                           model_id=model_id, dataset=tracking.log_dataset(data, "test"))
            if run is None:
                finished = done.get(key) or tracking.finished_child(child)
                if finished is None:
                    continue  # another invocation is running it: the waiting pass comes back to it
                row = _finished_row(finished, child, config)
            rows[key] = row
            clean = row["clean_accuracy"]  # the clean run comes first in the grid
            progress.set_postfix_str(
                f"{subject.label} {child['position']} {child['std']:g}: {100 * row['accuracy']:.1f}%")
            progress.update()
        if len(rows) < len(children):
            progress.set_postfix_str(f"{subject.label}: waiting for another invocation of this sweep")
    return [rows[tracking.config_key(c)] for c in children]


def evaluation_set(modality: str, config: dict):
    """The suite's test subset (seeded, so every class is present): the same for every family."""
    from snnbench.training.suite import test_data as suite_test_data

    return suite_test_data(modality, config["test_limit"])


def sweep(config: dict, models, device: str) -> list:
    """Run the whole grid under the active parent run; returns one row per child."""
    parent = mlflow.active_run().info.run_id
    done = tracking.finished_children(parent)
    plan = subjects(config)
    total = sum(len(grid(s, config)) for s in plan)
    rows, data = [], {}
    with tqdm(total=total, desc="noise_sweep", unit="run", dynamic_ncols=True) as progress:
        for subject in plan:
            if subject.modality not in data:
                data[subject.modality] = evaluation_set(subject.modality, config)
            rows += run_subject(subject, lambda s=subject: models.model(s), data[subject.modality],
                                config, done, progress, device, models.model_ids.get(models.name(subject)))
    return rows


# --------------------------------------------------------------------------- results

def summaries(rows: list) -> dict:
    """Robustness metrics per (family, model, modality, position), over the seed-averaged curve."""
    out = {}
    curves = sorted({(r["engine"], r["model"], r["modality"], r["noise_position"]) for r in rows if r["noise_position"] != "none"})
    for family, model, modality, position in curves:
        points = [r for r in rows if (r["engine"], r["model"], r["modality"], r["noise_position"]) ==
                  (family, model, modality, position)]
        stds = sorted({r["noise_std"] for r in points})
        means = [np.mean([r["accuracy"] for r in points if r["noise_std"] == s]) for s in stds]
        curve = robustness.Curve.from_points(stds, means, points[0]["clean_accuracy"])
        out[f"{family}.{model}.{modality}.{position}"] = robustness.summarise(curve)
    return out


def markdown_table(rows: list) -> str:
    """Mean accuracy (%) over seeds: one line per (family, model, modality, position), a column per std."""
    stds = sorted({r["noise_std"] for r in rows if r["noise_position"] != "none"})
    lines = ["| engine | model | modality | position | clean | " + " | ".join(f"std {s:g}" for s in stds) + " |",
             "|" + "---|" * (5 + len(stds))]
    keys = list(dict.fromkeys((r["engine"], r["model"], r["modality"], r["noise_position"]) for r in rows
                              if r["noise_position"] != "none"))
    for key in keys:
        points = [r for r in rows if (r["engine"], r["model"], r["modality"], r["noise_position"]) == key]
        cells = []
        for s in stds:
            values = [100 * r["accuracy"] for r in points if r["noise_std"] == s]
            cells.append(f"{np.mean(values):.1f}" + (f" ± {np.std(values):.1f}" if len(values) > 1 else "")
                         if values else "")
        lines.append(f"| {' | '.join(key)} | {100 * points[0]['clean_accuracy']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_results(rows: list, config: dict, out: Path):
    """Table (CSV + MLflow table), plot and robustness summary (metrics + JSON) on the parent run."""
    out.mkdir(parents=True, exist_ok=True)
    table = harness.result_table(rows)
    table.to_csv(out / "noise_sweep.csv", index=False)
    mlflow.log_artifact(str(out / "noise_sweep.csv"))
    harness.log_result_table(rows)
    (out / "noise_sweep.md").write_text(markdown_table(rows) + "\n")
    mlflow.log_artifact(str(out / "noise_sweep.md"))
    robustness.plot_accuracy_vs_std([r for r in rows if r["noise_position"] != "none"], config["positions"],
                                    out / "accuracy_vs_std.png",
                                    title=f"noise_sweep ({config['profile']}, {config['noise_mode']} SNN noise)")
    mlflow.log_artifact(str(out / "accuracy_vs_std.png"))
    summary = summaries(rows)
    (out / "robustness.json").write_text(json.dumps(summary, indent=1))
    mlflow.log_artifact(str(out / "robustness.json"))
    mlflow.log_metrics({f"{metric}.{curve}": value for curve, metrics in summary.items()
                        for metric, value in metrics.items() if np.isfinite(value)})
    mlflow.log_metrics({"children": len(rows), "children_reused": sum(r["reused"] for r in rows)})
    return summary


def run(args):
    from snnbench.engines.sweep_models import Models
    from snnbench.device import resolve_device

    config = settings(args)
    device = resolve_device(args.device)
    models = Models(config, device)
    started, cpu_started = time.perf_counter(), time.process_time()
    with tracking.benchmark_run(BENCHMARK, config, device=str(device), resume=True) as parent, \
            tempfile.TemporaryDirectory(prefix="snnbench-noise-sweep-") as out:
        models.prepare(subjects(config))
        rows = sweep(config, models, str(device))
        log_results(rows, config, Path(out))
        # this invocation's times (training included; a resumed sweep logs its own)
        mlflow.log_metrics({"wall_seconds": time.perf_counter() - started,
                            "cpu_seconds": time.process_time() - cpu_started})
    print(markdown_table(rows))
    print(f"\nnoise_sweep: {len(rows)} runs ({sum(r['reused'] for r in rows)} reused) in "
          f"{time.perf_counter() - started:.0f} s; parent run {parent.info.run_id} (experiment {BENCHMARK!r}, "
          f"store {tracking.tracking_uri()})")
