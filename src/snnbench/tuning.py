"""Optuna search over the neuron parameters that DNN->SNN conversion leaves untrained.

The converted network's weights come from the DNN; its neurons' gain, bias (scale and offset),
firing-rate scale, output synapse and optionally LIF time constants do not. A study searches them
per hidden layer, maximising the SNN's accuracy on the validation split (never the test set).

* Storage: any SQLAlchemy URL (``sqlite:///optuna.db``, ``postgresql+psycopg2://...``) or an
  Optuna journal file (``journal:PATH`` or a path ending in ``.journal``).
* ``n_trials`` is the study's TOTAL of finished (complete + pruned) trials: running the same
  study again finishes what is missing; several workers on one storage stop at exactly that total.
* Fixed per study (checked on resume): the trained model, neuron type, time steps, validation
  subset and search bounds, stored as the study's user attribute ``task``.
"""

import json
import multiprocessing
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from snnbench.errors import SnnbenchError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
SECOND_OBJECTIVES = ("none", "spikes", "synops")  # minimised: spikes / synaptic operations per image
SECOND_STATS = {"spikes": "spikes_per_sample", "synops": "synaptic_ops_per_sample"}
NEURONS = ("lif", "if", "lif-rate", "relu-rate")
JOURNAL_PREFIX = "journal:"
VALIDATION_IMAGES = 12000  # validation_split(60000, 0.2)
HEARTBEAT_S = 30  # RDB storages: a trial whose worker died is failed after ~2 heartbeats


# ----------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class SearchSpace:
    """Bounds per hidden layer; ``None`` leaves that parameter at its untuned value."""
    gain: tuple[float, float] | None = (0.05, 5.0)             # log scale
    bias_scale: tuple[float, float] | None = (0.0, 2.0)
    bias_offset: tuple[float, float] | None = (-1.0, 1.0)
    rate_scale: tuple[float, float] | None = (1.0, 1000.0)     # log scale
    synapse: tuple[float, float] | None = (1e-4, 1e-2)         # seconds, log; or unfiltered
    tau_rc: tuple[float, float] | None = None                  # LIF only, log scale (e.g. 0.002,0.2)
    tau_ref: tuple[float, float] | None = None                 # LIF only, log scale (e.g. 0.0001,0.004)

    LOG = ("gain", "rate_scale", "synapse", "tau_rc", "tau_ref")

    def check(self):
        for name in ("gain", "bias_scale", "bias_offset", "rate_scale", "synapse", "tau_rc", "tau_ref"):
            bounds = getattr(self, name)
            if bounds is None:
                continue
            low, high = bounds
            if not low < high:
                raise SnnbenchError(f"search bounds for {name} must be LOW,HIGH with LOW < HIGH, got {low},{high}")
            if name in self.LOG and low <= 0:
                raise SnnbenchError(f"search bounds for {name} are log-scale and must be > 0, got {low},{high}")

    def tuned(self, neuron: str) -> list[str]:
        names = ["gain", "bias_scale", "bias_offset", "rate_scale", "synapse"]
        if neuron == "lif":
            names += ["tau_rc", "tau_ref"]
        return [n for n in names if getattr(self, n) is not None]

    def suggest(self, trial: optuna.Trial, n_hidden: int, neuron: str) -> dict:
        """Ask the trial for every tuned parameter; returns the trial's parameter dict."""
        for i in range(n_hidden):
            for name in self.tuned(neuron):
                low, high = getattr(self, name)
                key = f"layer{i}.{name}"
                if name == "synapse" and not trial.suggest_categorical(f"layer{i}.filtered", [False, True]):
                    continue
                trial.suggest_float(key, low, high, log=name in self.LOG)
        return dict(trial.params)

    def untuned_params(self, base: list[dict], neuron: str) -> dict:
        """The trial parameters that reproduce the untuned conversion (``base``, one per layer)."""
        params = {}
        for i, layer in enumerate(base):
            for name in self.tuned(neuron):
                if name == "synapse":
                    params[f"layer{i}.filtered"] = layer["synapse"] is not None
                    if layer["synapse"] is None:
                        continue
                params[f"layer{i}.{name}"] = layer[name]
        return params


def layers_from_params(params: dict, base: list[dict]) -> list[dict]:
    """Per-layer settings: ``base`` (the untuned ones) overridden by a trial's parameters."""
    layers = []
    for i, layer in enumerate(base):
        layer = dict(layer)
        for key, value in params.items():
            prefix, _, name = key.partition(".")
            if prefix == f"layer{i}" and name in layer:
                layer[name] = value
        if params.get(f"layer{i}.filtered") is False:
            layer["synapse"] = None
        layers.append(layer)
    return layers


# ----------------------------------------------------------------------------- the fixed task
@dataclass(frozen=True)
class ConversionTask:
    """Everything a study keeps fixed: the model to convert, how it is simulated, where it is scored."""
    arch: str = "mlp"
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 100
    seed: int = 0                  # model training and the train/validation split
    train_limit: int | None = None  # train the DNN on the first N training images only (tests)
    neuron: str = "lif"
    steps: int = 8
    dt: float = 0.001
    readout: str = "mean"
    minibatch: int = 100
    simulator: str = "nengo_dl"
    val_samples: int = 2000        # validation images scored per trial (the first of the split)
    val_steps: int = 4             # growing subsets: accuracy reported after each quarter, etc.
    second_objective: str = "none"  # or spikes / synops per image: a multi-objective study
    space: SearchSpace = field(default_factory=SearchSpace)

    def check(self):
        if self.neuron not in NEURONS:
            raise SnnbenchError(f"unknown neuron {self.neuron!r}; use one of {', '.join(NEURONS)}")
        if self.second_objective not in SECOND_OBJECTIVES:
            raise SnnbenchError(f"unknown second objective {self.second_objective!r}; use one of "
                                f"{', '.join(SECOND_OBJECTIVES)}")
        if self.val_samples > VALIDATION_IMAGES:
            raise SnnbenchError(f"--val-samples {self.val_samples} is more than the {VALIDATION_IMAGES} "
                                "validation images (20% of MNIST train)")
        if self.val_samples < self.val_steps or self.val_steps < 1:
            raise SnnbenchError(f"--val-samples ({self.val_samples}) must be at least --val-steps "
                                f"({self.val_steps}), and --val-steps at least 1")
        self.space.check()

    @property
    def multi_objective(self) -> bool:
        return self.second_objective != "none"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "ConversionTask":
        data = dict(data)
        space = data.pop("space", {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known},
                   space=SearchSpace(**{k: tuple(v) if v is not None else None for k, v in space.items()}))

    def base_layers(self, n_hidden: int) -> list[dict]:
        """The untuned per-layer parameters: LayerParams' defaults, as convert uses them."""
        from snnbench.nengo_net import LayerParams
        return [asdict(LayerParams(neuron=self.neuron)) for _ in range(n_hidden)]

    def sim_dict(self) -> dict:
        return {"steps": self.steps, "dt": self.dt, "readout": self.readout,
                "minibatch": self.minibatch, "simulator": self.simulator}


# ----------------------------------------------------------------------------- storage
def storage_label(spec: str) -> str:
    """The storage as it may be logged: an RDB URL with its password hidden."""
    if spec.startswith(JOURNAL_PREFIX) or "://" not in spec:
        return spec
    from sqlalchemy.engine import make_url
    try:
        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - malformed URLs are reported by open_storage
        return spec.split("://", 1)[0] + "://***"


def open_storage(spec: str):
    """An Optuna storage from a SQLAlchemy URL or a journal file (``journal:PATH`` / ``*.journal``)."""
    if spec.startswith(JOURNAL_PREFIX) or (spec.endswith(".journal") and "://" not in spec):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = spec[len(JOURNAL_PREFIX):] if spec.startswith(JOURNAL_PREFIX) else spec
        if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise SnnbenchError(f"journal storage {spec!r} needs a file in an existing folder: --storage journal:PATH")
        return JournalStorage(JournalFileBackend(path))
    if "://" not in spec:
        raise SnnbenchError(f"storage {spec!r} is neither a database URL (sqlite:///optuna.db, "
                            "postgresql+psycopg2://USER:PASS@HOST/DB) nor a journal file (journal:PATH)")
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what workers need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(spec, heartbeat_interval=HEARTBEAT_S, grace_period=2 * HEARTBEAT_S)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors come in many types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnnbenchError(f"cannot open Optuna storage {storage_label(spec)}: {first_line}; check the "
                            "URL, that the database server is running and the database exists") from None


@dataclass(frozen=True)
class StudyOptions:
    """How one invocation runs a study (may differ between runs of the same study)."""
    study_name: str
    storage: str = "sqlite:///optuna.db"
    n_trials: int = 40          # total finished trials wanted in the study
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0               # sampler seed
    workers: int = 1

    def check(self):
        if self.sampler not in SAMPLERS:
            raise SnnbenchError(f"unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SnnbenchError(f"unknown pruner {self.pruner!r}; use one of {', '.join(PRUNERS)}")
        if self.n_trials < 0 or self.workers < 1:
            raise SnnbenchError("--n-trials must be >= 0 and --workers >= 1")
        if not self.study_name:
            raise SnnbenchError("--study-name must not be empty")


def make_sampler(options: StudyOptions, worker: int = 0):
    # Workers get distinct seeds: identical seeded samplers would propose identical trials.
    seed = options.seed + 1000 * worker
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate TPE is "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)


def make_pruner(options: StudyOptions, task: ConversionTask):
    if options.pruner == "none" or task.multi_objective:  # Optuna cannot prune multi-objective trials
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


def load_study(options: StudyOptions, task: ConversionTask, worker: int = 0, create: bool = False):
    """Open (or with ``create`` make) the study, refusing one made for a different task."""
    storage = open_storage(options.storage)
    directions = ["maximize", "minimize"] if task.multi_objective else ["maximize"]
    kwargs = dict(study_name=options.study_name, storage=storage, sampler=make_sampler(options, worker),
                  pruner=make_pruner(options, task))
    if create:
        study = optuna.create_study(directions=directions, load_if_exists=True, **kwargs)
    else:
        study = optuna.load_study(**kwargs)
    stored = study.user_attrs.get("task")
    if stored is None:
        study.set_user_attr("task", task.to_dict())
    elif stored != task.to_dict():
        diff = sorted(k for k in set(stored) | set(task.to_dict()) if stored.get(k) != task.to_dict().get(k))
        raise SnnbenchError(f"study {options.study_name!r} in {storage_label(options.storage)} was made for "
                            f"other settings ({', '.join(diff)} differ); use the same settings to resume "
                            "it, or a new --study-name")
    return study


def finished_count(study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


# ----------------------------------------------------------------------------- workers
class SurplusTrial(Exception):
    """Raised by a trial started after the study's total was already reached by other workers."""


def exact_total(objective: Callable, n_trials: int) -> Callable:
    """Wrap ``objective`` so that the study never finishes more than ``n_trials`` trials.

    Trial numbers are handed out atomically by the storage; a trial whose lower-numbered
    live-or-finished trials already make up the total is surplus: it stops this worker and ends
    as FAIL (user attribute ``surplus``) without being evaluated, so it is never counted.
    """
    def gated(trial: optuna.Trial):
        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=COUNTED) if t.number < trial.number]
        if len(ahead) >= n_trials:
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise SurplusTrial(f"trial {trial.number}: the study already has {n_trials} trials")
        return objective(trial)
    return gated


def work(task: ConversionTask, options: StudyOptions, objective_factory: Callable, parent_run_id: str | None,
         worker: int = 0, objective: Callable | None = None):
    """One worker: run trials of the study until it holds ``n_trials`` finished trials (or timeout)."""
    import logging
    optuna.logging.set_verbosity(logging.WARNING)
    study = load_study(options, task, worker=worker)
    if finished_count(study) >= options.n_trials:
        return
    objective = exact_total(objective or objective_factory(task), options.n_trials)
    callbacks = [optuna.study.MaxTrialsCallback(options.n_trials, states=FINISHED)]
    if parent_run_id:
        callbacks.append(TrialRunLogger(parent_run_id, worker))
    study.optimize(objective, timeout=options.timeout, callbacks=callbacks, catch=(SurplusTrial,))


def run_workers(task: ConversionTask, options: StudyOptions, objective_factory: Callable,
                parent_run_id: str | None, objective: Callable | None = None):
    """``options.workers`` local worker processes on the study's storage (or this process, with
    ``objective`` if given, when there is one worker)."""
    if options.workers == 1:
        work(task, options, objective_factory, parent_run_id, objective=objective)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=work, args=(task, options, objective_factory, parent_run_id, w),
                                 name=f"tune-worker-{w}") for w in range(options.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise SnnbenchError(f"worker process(es) {', '.join(failed)} failed (see their messages above); "
                            "run the same command again to finish the study")


def prepare_study(task: ConversionTask, options: StudyOptions, base: list[dict]):
    """Create or reopen the study; a new study's first trial is the untuned setting ``base``
    (one dict of neuron parameters per hidden layer), which the study stores."""
    task.check()
    options.check()
    study = load_study(options, task, create=True)
    if "base_layers" not in study.user_attrs:
        study.set_user_attr("base_layers", base)
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(task.space.untuned_params(base, task.neuron), user_attrs={"untuned": True},
                            skip_if_exists=True)
    return study


# ----------------------------------------------------------------------------- MLflow
class TrialRunLogger:
    """Optuna callback: each finished trial becomes a nested MLflow run under the study's run."""

    def __init__(self, parent_run_id: str, worker: int = 0):
        self.parent_run_id = parent_run_id
        self.worker = worker

    def __call__(self, study, trial):
        if trial.user_attrs.get("surplus"):
            return  # never evaluated: not a trial of the study's total
        from mlflow.tracking import MlflowClient

        from snnbench.tracking import tracking_uri
        client = MlflowClient(tracking_uri())
        parent = client.get_run(self.parent_run_id)
        start = trial.datetime_start or trial.datetime_complete
        run = client.create_run(parent.info.experiment_id, run_name=f"trial-{trial.number}",
                                start_time=int(start.timestamp() * 1000) if start else None,
                                tags={"mlflow.parentRunId": self.parent_run_id,
                                      "optuna.study": study.study_name, "optuna.trial": str(trial.number),
                                      "optuna.state": trial.state.name, "optuna.worker": str(self.worker),
                                      **{f"optuna.{k}": str(v) for k, v in trial.user_attrs.items()}})
        run_id = run.info.run_id
        for key, value in trial.params.items():
            client.log_param(run_id, key, value)
        if trial.state == TrialState.COMPLETE:  # a pruned trial's value is only a partial accuracy
            names = ["validation_accuracy", f"{study.user_attrs['task']['second_objective']}_per_image"]
            for name, value in zip(names, trial.values):
                client.log_metric(run_id, name, float(value))
        for step, value in sorted(trial.intermediate_values.items()):
            client.log_metric(run_id, "validation_accuracy_partial", float(value), step=int(step))
        end = trial.datetime_complete
        status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(trial.state, "FAILED")
        client.set_terminated(run_id, status=status, end_time=int(end.timestamp() * 1000) if end else None)


def best_trial(study):
    """The best trial; in a multi-objective study, the most accurate one on the Pareto front."""
    if len(study.directions) > 1:
        front = study.best_trials
        if not front:
            raise SnnbenchError(f"study {study.study_name!r} has no completed trial yet; run some trials first")
        return max(front, key=lambda t: t.values[0])
    try:
        return study.best_trial
    except ValueError:
        raise SnnbenchError(f"study {study.study_name!r} has no completed trial yet; run some trials first") from None


def params_document(study, trial=None) -> dict:
    """The best setting as convert's ``--params-json`` reads it: per-layer parameters and the sim."""
    task = ConversionTask.from_dict(study.user_attrs["task"])
    trial = trial or best_trial(study)
    return {"layers": layers_from_params(trial.params, study.user_attrs["base_layers"]), "sim": task.sim_dict(),
            "source": {"study": study.study_name, "trial": trial.number,
                       "validation_accuracy": trial.values[0], "val_samples": task.val_samples,
                       "model": {k: getattr(task, k) for k in ("arch", "epochs", "lr", "batch_size", "seed", "train_limit")}}}


def best_params_from_study(study_name: str, storage: str) -> dict:
    """The best setting of a stored study, in convert's ``--params-json`` format."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise SnnbenchError(f"no study {study_name!r} in {storage_label(storage)}; check --study-name "
                            "and --storage (snnbench tune creates it)") from None
    if "task" not in study.user_attrs:
        raise SnnbenchError(f"study {study_name!r} was not made by snnbench tune (no task attribute)")
    return params_document(study)


def log_plots(study, folder):
    """Optimisation history and parameter importances as PNG files in ``folder``; returns paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    name = "validation accuracy"
    plots = {"optimization_history.png": lambda: vis.plot_optimization_history(study, target=target, target_name=name)}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2:
        plots["param_importances.png"] = lambda: vis.plot_param_importances(study, target=target, target_name=name)
    if len(study.directions) > 1:
        second = study.user_attrs["task"]["second_objective"]
        plots["pareto_front.png"] = lambda: vis.plot_pareto_front(study, target_names=["accuracy", f"{second} per image"])
    paths = []
    for file_name, draw in plots.items():
        with warnings.catch_warnings():  # Optuna marks its matplotlib plots "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = draw()
        figure = axes.figure if hasattr(axes, "figure") else np.ravel(axes)[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = folder / file_name
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def trial_counts(study) -> dict:
    trials = study.get_trials(deepcopy=False)
    counts = {f"trials_{state.name.lower()}": sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    counts["trials_surplus"] = sum(bool(t.user_attrs.get("surplus")) for t in trials)
    counts["trials_fail"] -= counts["trials_surplus"]
    return counts


# ----------------------------------------------------------------------------- the objective
def trained_model_folder(task: ConversionTask):
    """The cached trained DNN (``model.onnx``) that the study converts."""
    from snnbench.models.conversion import trained_conversion_model
    return trained_conversion_model(task.arch, task.epochs, task.lr, task.batch_size, task.seed,
                                    train_limit=task.train_limit)


def validation_set(task: ConversionTask):
    """The first ``val_samples`` images of the 20 % validation split of MNIST train.

    The conversion DNN is trained on all 60,000 training images (as convert trains it), so
    these images were seen by the DNN; they are used because the test set must stay unseen.
    """
    from snnbench.data import load_features, validation_split
    train = load_features("image", "train")
    _, val_idx = validation_split(len(train), 0.2, task.seed)
    if task.val_samples > len(val_idx):
        raise SnnbenchError(f"--val-samples {task.val_samples} is more than the {len(val_idx)} validation images")
    return train.subset(val_idx[: task.val_samples])


def chunk_ends(n: int, steps: int) -> list[int]:
    """Ends of the growing validation subsets: n/steps, 2n/steps, ..., n."""
    return sorted({int(round(n * (k + 1) / steps)) for k in range(steps)})


class ConversionObjective:
    """Validation accuracy (and optionally mean spikes per image) of the converted SNN for a trial.

    Accuracy is reported on growing validation subsets, so the pruner stops hopeless trials early.
    Built once per worker: the model and the validation images are loaded here, never the test set.
    """

    def __init__(self, task: ConversionTask):
        from snnbench import onnx_io
        self.task = task
        self.converted = onnx_io.load_any(trained_model_folder(task))
        self.n_hidden = len(self.converted.hidden)
        self.base = task.base_layers(self.n_hidden)
        val = validation_set(task)
        self.x, self.y, self.checksums = val.x, val.y, val.checksums

    def runner(self, layers: list[dict]):
        from snnbench.runners import LayerParams, NengoRunner, SimConfig
        # Activity counters stay on even when unused: they are part of the network whose seeds
        # give the LIF initial voltages, so convert (which has them) reproduces these results.
        return NengoRunner(self.converted, [LayerParams(**layer) for layer in layers],
                           SimConfig(**self.task.sim_dict(), seed=self.task.seed))

    def __call__(self, trial: optuna.Trial):
        params = self.task.space.suggest(trial, self.n_hidden, self.task.neuron)
        with self.runner(layers_from_params(params, self.base)) as runner:
            return self._score(trial, runner)

    def _score(self, trial: optuna.Trial, runner):
        correct, start, activity = 0, 0, 0.0
        for end in chunk_ends(len(self.y), self.task.val_steps):
            logits = runner.predict(self.x[start:end], start=start)
            correct += int((logits.argmax(axis=1) == self.y[start:end]).sum())
            accuracy = correct / end
            if self.task.multi_objective:
                activity += runner.last_stats[SECOND_STATS[self.task.second_objective]] * (end - start)
            else:
                trial.report(accuracy, end)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after {end} images")
            start = end
        if self.task.multi_objective:
            return accuracy, activity / len(self.y)
        return accuracy


def conversion_objective(task: ConversionTask) -> ConversionObjective:
    return ConversionObjective(task)


# ----------------------------------------------------------------------------- the benchmark
def score_on_test_set(objective: ConversionObjective, document: dict) -> dict:
    """Test-set accuracy of the DNN (ONNX Runtime) and of the SNN untuned and with ``document``.

    The only place the MNIST test set is read; called after the study has finished.
    """
    from snnbench.data import load_features
    from snnbench.runners import OrtRunner
    test = load_features("image", "test")
    folder = trained_model_folder(objective.task)
    scores = {"test_images": len(test.y)}
    dnn = float((OrtRunner(folder / "model.onnx").predict(test.x).argmax(axis=1) == test.y).mean())
    scores["dnn_test_accuracy"] = dnn
    for name, layers in (("untuned", objective.base), ("tuned", document["layers"])):
        snn = float((objective.runner(layers).predict(test.x).argmax(axis=1) == test.y).mean())
        scores[f"snn_test_accuracy_{name}"] = snn
        scores[f"conversion_loss_{name}_points"] = 100.0 * (dnn - snn)
    return scores


def run_benchmark(task: ConversionTask, options: StudyOptions, *, params: dict | None = None,
                  best_params_out=None, score_test: bool = True,
                  objective_factory: Callable = conversion_objective) -> dict:
    """Run (or resume) the study as a parent MLflow run; returns the best setting's document."""
    import tempfile
    from pathlib import Path

    import mlflow

    from snnbench.tracking import benchmark_run

    task.check()
    options.check()
    open_storage(options.storage)  # a bad storage fails now, not after the model is trained
    objective = objective_factory(task)  # builds the model before any worker starts
    study = prepare_study(task, options, objective.base)
    params = params or {**task.to_dict(), **asdict(options), "storage": storage_label(options.storage)}
    checksums = getattr(objective, "checksums", None)
    with benchmark_run("tune_conversion", params, run_name=options.study_name, data_checksums=checksums) as run:
        mlflow.set_tags({"optuna.study": options.study_name, "optuna.storage": storage_label(options.storage)})
        run_workers(task, options, objective_factory, run.info.run_id, objective=objective)
        study = load_study(options, task)
        counts = trial_counts(study)
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        document = params_document(study)
        mlflow.log_metric("best_validation_accuracy", document["source"]["validation_accuracy"])
        mlflow.log_dict(document, "best_params.json")
        if best_params_out is not None:
            Path(best_params_out).write_text(json.dumps(document, indent=1))
        with tempfile.TemporaryDirectory() as folder:
            for path in log_plots(study, Path(folder)):
                mlflow.log_artifact(str(path), "plots")
        if score_test:
            scores = score_on_test_set(objective, document)
            mlflow.log_param("test_images", scores.pop("test_images"))
            mlflow.log_metrics(scores)
            document["test"] = scores
    return document
