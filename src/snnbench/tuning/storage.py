"""Where studies live and how they are opened: Optuna storages (any SQLAlchemy URL, or an Optuna
journal file: ``journal:PATH`` or a path ending in ``.journal``), the invocation's options, samplers
and pruners, and opening a study checked against its task. On a Dask cluster (snnbench.execution)
``dask:SPEC`` keeps the study on the scheduler (optuna-integration's DaskStorage; SPEC as above,
opened by the scheduler, or empty: in its memory), for workers that reach no database.
``n_trials`` is the study's TOTAL of finished (complete + pruned) trials.
"""

import os
import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from snnbench.config import auto, check_choices, option, positive, positive_or_none
from snnbench.errors import ConfigError, StorageError
from snnbench.tuning.task import STUDY, ConversionTask

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
JOURNAL_PREFIX = "journal:"
DASK_PREFIX = "dask:"
HEARTBEAT_S = 30  # RDB storages: a trial whose worker died is failed after ~2 heartbeats


def experimental():
    """Optuna's "experimental" features, without their warning."""
    return warnings.catch_warnings(action="ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_label(spec: str) -> str:
    """The storage as it may be logged: an RDB URL with its password hidden."""
    if spec.startswith(DASK_PREFIX):
        return DASK_PREFIX + storage_label(spec.removeprefix(DASK_PREFIX))
    if spec.startswith(JOURNAL_PREFIX) or "://" not in spec:
        return spec
    from sqlalchemy.engine import make_url
    try:
        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - malformed URLs are reported by open_storage
        return spec.split("://", 1)[0] + "://***"


def open_storage(spec: str):
    """An Optuna storage from a SQLAlchemy URL or a journal file (``journal:PATH`` / ``*.journal``)."""
    if spec.startswith(DASK_PREFIX):
        if spec != DASK_PREFIX:
            open_storage(spec.removeprefix(DASK_PREFIX))  # checked here; the scheduler opens it
        raise ConfigError(f"--storage {storage_label(spec)} keeps the study on a Dask scheduler: run with "
                          "--cluster ADDRESS or --workers N")
    if spec.startswith(JOURNAL_PREFIX) or (spec.endswith(".journal") and "://" not in spec):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = spec.removeprefix(JOURNAL_PREFIX)
        if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ConfigError(f"journal storage {spec!r} needs a file in an existing folder: --storage journal:PATH")
        return JournalStorage(JournalFileBackend(path))
    if "://" not in spec:
        raise ConfigError(f"storage {spec!r} is neither a database URL (sqlite:///optuna.db, "
                          "postgresql+psycopg2://USER:PASS@HOST/DB) nor a journal file (journal:PATH)")
    try:
        with experimental():  # heartbeats, which workers need
            return optuna.storages.RDBStorage(spec, heartbeat_interval=HEARTBEAT_S, grace_period=2 * HEARTBEAT_S)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors come in many types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open Optuna storage {storage_label(spec)}: {first_line}; check the "
                           "URL, that the database server is running and the database exists") from None


@dataclass(frozen=True)
class StudyOptions:
    """How one invocation runs a study (may differ between runs of the same study)."""
    study_name: str = option("tune-conversion", "Optuna study name (same name + storage resumes it)", group=STUDY)
    storage: str = option("sqlite:///optuna.db", "SQLAlchemy URL (sqlite:///optuna.db, "
                                                 "postgresql+psycopg2://USER:PASS@HOST/DB) or journal file "
                                                 "(journal:PATH or PATH.journal)", group=STUDY)
    n_trials: int = option(40, "TOTAL finished (complete + pruned) trials the study should hold; a rerun "
                                        "finishes the missing ones (auto: 20 quick, 100 full)", auto(positive(int)),
                                  group=STUDY)
    timeout: float | None = option(None, "stop starting trials after this many seconds (none: no limit)",
                                   positive_or_none, group=STUDY)
    sampler: str = option("tpe", "TPE (seeded with --seed) or random", choices=SAMPLERS, group=STUDY)
    seed: int = option(0, "sampler seed (auto: --seed); trial workers add 1000 x their index; give each "
                                    "machine of a distributed study its own seed", auto(int), flag="sampler_seed",
                              group=STUDY)
    pruner: str = option("median", "median pruner on growing validation subsets, or none", choices=PRUNERS,
                         group=STUDY)
    workers: int = 1

    def check(self):
        check_choices(self)
        if self.n_trials < 0 or self.workers < 1:
            raise ConfigError("--n-trials must be >= 0 and --workers >= 1")
        if not self.study_name:
            raise ConfigError("--study-name must not be empty")


def make_sampler(options: StudyOptions, worker: int = 0):
    # Workers get distinct seeds: identical seeded samplers would propose identical trials.
    seed = options.seed + 1000 * worker
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with experimental():  # multivariate TPE
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)


def make_pruner(options: StudyOptions, task: ConversionTask):
    if options.pruner == "none" or task.multi_objective:  # Optuna cannot prune multi-objective trials
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


def study_storage(spec: str, executor=None):
    """The storage object every worker is given: for ``dask:SPEC`` a DaskStorage on the executor's
    scheduler (one per SPEC); otherwise None (each opens ``spec`` itself)."""
    if not spec.startswith(DASK_PREFIX):
        return None
    if executor is None or executor.client is None:
        open_storage(spec)  # the one-line error
    from optuna_integration.dask import DaskStorage

    from snnbench.tracking.runs import config_key
    inner = spec.removeprefix(DASK_PREFIX)
    with experimental():
        return DaskStorage(open_storage(inner) if inner else None, name=f"snnbench-{config_key(spec)}",
                           client=executor.client)


def load_study(options: StudyOptions, task: ConversionTask, worker: int = 0, create: bool = False, storage=None):
    """Open (or with ``create`` make) the study, refusing one made for a different task; ``storage``:
    a storage object to use instead of opening ``options.storage`` (:func:`study_storage`)."""
    storage = storage or open_storage(options.storage)
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
    elif (stored := ConversionTask.from_dict(stored).to_dict()) != task.to_dict():  # settings added since: defaults
        diff = sorted(k for k in set(stored) | set(task.to_dict()) if stored.get(k) != task.to_dict().get(k))
        raise StorageError(f"study {options.study_name!r} in {storage_label(options.storage)} was made for "
                           f"other settings ({', '.join(diff)} differ); use the same settings to resume "
                           "it, or a new --study-name")
    return study


def finished_count(study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))
