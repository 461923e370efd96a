"""``snnbench multimodal_study``: the study's whole grid (snnbench.benchmarks.multimodal_grid) for every seed,
trained by the grid trainer (snnbench.training.grid), scored clean and under the four evaluation noises. The parent
run logs the settings, training time and speed per stack shape, ``study.json``, ``results.json`` (one row per
training and noise), ``claims.json`` and the report section; each child its history, test accuracies with
Wilson intervals and its model (tag ``snnbench.model_id``). Stacks are checkpointed at each epoch end: a
stopped run (``--time-limit``, a crash) continues with ``--resume true``.
"""

import json
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import torch

from snnbench.benchmarks import claims
from snnbench.benchmarks.multimodal import log_history
from snnbench.benchmarks.multimodal_options import (ENGINE_OPTIONS, PROFILES, Seeds, SuiteTraining, data_checksums,
                                                   devices_of, seeds_of, settings_by_seed)
from snnbench.benchmarks.options import Common, from_profile, modalities, resume
from snnbench.config import Take, command_options, from_args, non_negative, option
from snnbench.benchmarks.multimodal_grid import (CLAIMS_DOCUMENT, CLEAN, NOISES, STUDY_DOCUMENT, result_row,
                                                 results_document, run_row, study_report, study_specs)
from snnbench.errors import SnnbenchError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import log_result_table
from snnbench.execution import executor_for
from snnbench.noise import NoiseSpec
from snnbench.tracking import summary as run_summary
from snnbench.tracking.runs import MODEL_ID_TAG, benchmark_run, child_run, config_key, finished_children
from snnbench.training.cache import read_summary
from snnbench.training.grid import Engine, Job, evaluate_jobs, time_step_parts, train_jobs, warm_up
from snnbench.training.suite import log_trained_model


CLAIM_WIDTH = 70  # characters of a claim's text in the run's summary


@dataclass(frozen=True)
class StudyOwnOptions:
    """multimodal_study's own options (besides the suite's training, seeds and grid engine)."""
    time_limit: int = option(0, "stop training after this many seconds (0 = never), checkpointed; --resume continues",
                             non_negative)
    results_out: str = option("", "also write the results document (JSON) to this file")
    step_parts: int = option(0, "first replay every stack's step parts (the whole step, without the optimiser, the "
                                "forward pass, the optimiser alone) this many times side by side and log each "
                                "one's ms per grid step (0 = off)", non_negative)


Options = command_options(
    "MultimodalStudyOptions", Common, Take(Seeds, defaults={"seeds": 3}), modalities(), SuiteTraining, *ENGINE_OPTIONS,
    StudyOwnOptions, resume("reopen the unfinished run of the same parameters: checkpointed stacks continue, finished "
                            "children are kept"), doc="multimodal_study's settings")
OPTIONS = {"multimodal_study": Options}


def _child_name(job: Job) -> str:
    spec = job.spec
    snn = f" {spec.neuron} {spec.reset} T={spec.steps}" if spec.family == "snn" else ""
    return f"{spec.modality} {spec.family} {spec.size}{snn} seed={job.settings.seed}"


def log_step_parts(jobs: list[Job], device: torch.device, engine: Engine, replays: int, epochs: int):
    """Each step part's milliseconds per grid step (``step_ms/PART``) and that over the grid's epochs
    (``step_grid_seconds/PART``: the time the grid would take if every step cost only that part)."""
    times, steps_per_epoch = time_step_parts(jobs, device, engine, replays)
    grid_steps = epochs * steps_per_epoch
    mlflow.log_metrics({f"step_ms/{part}": ms for part, ms in times.items()})
    mlflow.log_metrics({f"step_grid_seconds/{part}": ms * grid_steps / 1000 for part, ms in times.items()})
    print(f"multimodal_study: ms per grid step ({len(jobs)} trainings), and over its {grid_steps} steps: "
          + ", ".join(f"{part} {ms:.3g} ({ms * grid_steps / 1000:.0f} s)" for part, ms in times.items()))
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the probe's graphs and stacks are gone


def run(options: Options):
    scale = from_profile(options, PROFILES)
    devices = devices_of(options)
    seeds = seeds_of(options)
    engine = from_args(Engine, options)
    settings = settings_by_seed(options, scale)
    jobs = [Job(spec, settings[seed]) for spec in study_specs(options.modalities) for seed in seeds]
    noises = {CLEAN: NoiseSpec(), **NOISES}
    checksums = data_checksums(options.modalities)
    params = {"profile": options.profile, "seeds": seeds, "modalities": options.modalities, "validation": options.validation,
              "lr": options.lr, "batch_size": options.batch_size, **scale, "devices": [str(d) for d in devices],
              **asdict(engine), "trainings": len(jobs),
              "noises": {k: [n.std, n.position, n.mode, n.seed] for k, n in noises.items()}}
    device_name = torch.cuda.get_device_name(devices[0]) if devices[0].type == "cuda" else "cpu"
    gpus = [d.index for d in devices if d.type == "cuda"]
    name = f"multimodal_study {options.profile}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    with executor_for(options, gpus) as executor, \
            benchmark_run("multimodal_study", params, device=",".join(map(str, devices)), data_checksums=checksums,
                          resume=options.resume, sweep=True, run_name=name) as parent:
        mlflow.set_tag("snnbench.device_name", device_name)
        executor.on_workers(warm_up)  # here or on every worker: not timed as training
        if options.step_parts:
            log_step_parts(jobs, devices[0], engine, options.step_parts, scale["epochs"])
        started = time.perf_counter()
        summary = train_jobs(jobs, devices, engine, time_limit=options.time_limit, executor=executor)
        train_seconds = time.perf_counter() - started
        mlflow.log_metric("train_wall_seconds", train_seconds)
        if not summary["complete"]:
            left = sum(not j.trained() for j in jobs)
            raise SnnbenchError(f"time limit reached: {len(jobs) - left} of {len(jobs)} trainings finished, the rest "
                                f"checkpointed; run the same command with --resume true to continue")
        scores = evaluate_jobs(jobs, list(noises.values()), devices[0], scale["test_limit"], engine=engine)
        done = finished_children(parent.info.run_id)
        rows = []
        for job in jobs:
            result = read_summary(job.folder)
            counts = {}
            for name, noise in noises.items():
                logits, labels = scores[(job.key, noise)]
                counts[name] = (int(M.correct(logits, labels).sum()), len(labels))
            row = run_row(job.spec, job.settings.seed, result, counts)
            rows.append(row)
            child_config = {**job.spec.as_dict(), **asdict(job.settings)}
            if config_key(child_config) in done:  # finished by an earlier invocation of this run
                continue
            with child_run(_child_name(job), child_config, device=result["trained_on"],
                           data_checksums=checksums) as child:
                log_history(child.info.run_id, result["history"])
                # the trained model, by reference for other benchmarks (noise_sweep --models-from)
                mlflow.set_tag(MODEL_ID_TAG, log_trained_model(job.folder, "model"))
                metrics = {k: row[k] for k in ("best_val_accuracy", "best_epoch", "epochs_trained", "parameter_count")}
                metrics.update({"stacked_with": result.get("stacked_with", 1),
                                "mean_epoch_seconds": result["epoch_seconds"]})
                for noise_name in noises:
                    test = row[f"test/{noise_name}"]
                    key = "test_accuracy" if noise_name == CLEAN else f"test_accuracy_{noise_name.replace('/', '_')}"
                    metrics.update({key: test["accuracy"], f"{key}_ci_low": test["ci_low"],
                                    f"{key}_ci_high": test["ci_high"]})
                mlflow.log_metrics(metrics)
        meta = {"device": ",".join(map(str, devices)), "device_name": device_name, "train_seconds": train_seconds,
                "total_seconds": time.perf_counter() - started, "speeds": summary.get("speeds", {}),
                "stacks": summary["stacks"], "engine": asdict(engine),
                **{k: v for k, v in params.items() if k != "devices"}}
        results = results_document(rows, meta)
        mlflow.log_dict(results, STUDY_DOCUMENT)
        log_result_table([result_row(row, name) for row in rows for name in noises])
        claim_rows = claims.check(rows, "study" if options.validation == "study" else "ours")
        mlflow.log_dict(claim_rows, CLAIMS_DOCUMENT)
        cost = [e for entries in meta["speeds"].values() for e in entries]
        mlflow.log_metrics({"total_wall_seconds": meta["total_seconds"], "trainings": len(jobs),
                            "train_product_flops": sum(e["product_flops"] for e in cost),
                            "train_optimiser_bytes": sum(e["optimiser_bytes"] for e in cost)})
        for shape, entries in meta["speeds"].items():
            mlflow.log_metric(f"model_epochs_per_s/{shape.replace('=', '')}",
                              max(e["model_epochs_per_s"] for e in entries))
        for entry in results["summary"]:
            label = f"{entry['experiment']}/{entry['modality']}/{entry['family']}/{entry['value']}/{entry['metric']}"
            mlflow.log_metric(f"mean/{label}".replace("=", "_"), entry["mean"])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "study.md").write_text(study_report(results, Path(tmp) / "figures", "figures/"))
            mlflow.log_artifacts(tmp, "report")
        if options.results_out:
            Path(options.results_out).parent.mkdir(parents=True, exist_ok=True)
            Path(options.results_out).write_text(json.dumps(results, indent=1))
        run_summary.headline("Trainings", [{"trainings": len(jobs), "training seconds": f"{train_seconds:.0f}",
                                            "seconds in all": f"{meta['total_seconds']:.0f}"}])
        run_summary.headline(f"The study's claims under this run's protocol ({CLAIMS_DOCUMENT} has each part)",
                             [{"claim": c["claim"], "figure": c["figure"], "verdict": c["verdict"],
                               "says": textwrap.shorten(c["text"], CLAIM_WIDTH, placeholder=" …")}
                              for c in claim_rows])
