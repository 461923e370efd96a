"""Workers: units of work (snnbench.execution) that run trials of one study on a shared storage
and stop together at exactly the study's total of finished trials. Workers compute; the driver
logs each trial they finished as a nested MLflow run under the study's run."""

import logging
from contextlib import nullcontext
from dataclasses import replace
from typing import Callable

import optuna
from optuna.trial import TrialState

from snnbench.execution import Executor
from snnbench.tuning.storage import FINISHED, StudyOptions, finished_count, load_study, study_storage
from snnbench.tuning.task import ConversionTask

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


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


def work(task: ConversionTask, options: StudyOptions, objective_factory: Callable, worker: int = 0, storage=None,
         objective: Callable | None = None) -> list[int]:
    """One worker: run trials of the study until it holds ``n_trials`` finished trials (or the
    timeout); returns the numbers of the trials this worker finished."""
    optuna.logging.set_verbosity(logging.WARNING)
    study = load_study(options, task, worker=worker, storage=storage)
    if finished_count(study) >= options.n_trials:
        return []
    done = []

    def record(study, trial):
        if trial.state in FINISHED:
            done.append(trial.number)

    callbacks = [optuna.study.MaxTrialsCallback(options.n_trials, states=FINISHED), record]
    study.optimize(exact_total(objective or objective_factory(task), options.n_trials), timeout=options.timeout,
                   callbacks=callbacks, catch=(SurplusTrial,))
    return done


def run_trial_worker(unit: tuple) -> list[int]:
    """A unit of work, ``(task, options, objective_factory, worker, storage)``: one worker's share of
    the study's trials, its sampler seeded by ``worker``; ``storage`` one every worker reaches (a
    DaskStorage), else None (``options.storage``)."""
    return work(*unit)


def run_workers(task: ConversionTask, options: StudyOptions, objective_factory: Callable,
                parent_run_id: str | None, objective: Callable | None = None, executor: Executor | None = None):
    """Run the study's missing trials: in this process (with ``objective`` if given) when there is
    one worker and no cluster; else one unit per worker on the ``executor`` (a local cluster of
    ``options.workers`` processes when none is given). Each finished trial is logged as a child
    run of ``parent_run_id`` (when given) by this process."""
    own = executor is None and options.workers > 1
    executor = Executor.local(options.workers) if own else executor or Executor()
    with executor if own else nullcontext():  # close only the cluster started here
        storage = study_storage(options.storage, executor)
        alone = executor.client is None and options.workers == 1
        # Else a new study's first trial, the enqueued calibrated setting, runs here before the workers
        # start, so that no two workers pop it at once (SQLite cannot lock the row they both read).
        here = options if alone else replace(options, n_trials=min(options.n_trials, 1))
        numbers = work(task, here, objective_factory, objective=objective, storage=storage)
        _log_trials(parent_run_id, task, options, storage, numbers, 0)
        if alone:
            return
        n_workers = options.workers if own or executor.client is None else executor.workers()
        units = [(task, options, objective_factory, w, storage) for w in range(n_workers)]
        while True:
            for index, numbers in executor.map(run_trial_worker, units):
                _log_trials(parent_run_id, task, options, storage, numbers, index)
            if storage is None or not fail_orphans(load_study(options, task, storage=storage), options.n_trials):
                break  # an RDB storage fails a dead worker's trial by its heartbeat, and the others take over


def fail_orphans(study, n_trials: int) -> int:
    """A study on the scheduler (DaskStorage, no heartbeat) after every unit has returned: a trial
    still RUNNING was left by a worker that died mid-trial, and counts towards the total. Fail
    those (so that another round of units replaces them) while the study is short of ``n_trials``;
    returns how many were failed."""
    if finished_count(study) >= n_trials:
        return 0
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in orphans:
        study.tell(trial.number, state=TrialState.FAIL)
    return len(orphans)


def _log_trials(parent_run_id, task, options, storage, numbers: list[int], worker: int):
    """Log the trials ``worker`` finished as nested runs of the study's run."""
    if parent_run_id is None or not numbers:
        return
    from mlflow.tracking import MlflowClient

    from snnbench.tracking.runs import PARENT, tracking_uri
    study = load_study(options, task, storage=storage)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    client = MlflowClient(tracking_uri())
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    for trial in (trials[n] for n in numbers):
        start, end = trial.datetime_start or trial.datetime_complete, trial.datetime_complete
        run_id = client.create_run(experiment_id, run_name=f"trial-{trial.number}",
                                   start_time=int(start.timestamp() * 1000) if start else None,
                                   tags={PARENT: parent_run_id, "optuna.study": study.study_name,
                                         "optuna.trial": str(trial.number), "optuna.state": trial.state.name,
                                         "optuna.worker": str(worker),
                                         **{f"optuna.{k}": str(v) for k, v in trial.user_attrs.items()}}).info.run_id
        for key, value in trial.params.items():
            client.log_param(run_id, key, value)
        if trial.state == TrialState.COMPLETE:  # a pruned trial's value is only a partial accuracy
            names = ["validation_accuracy", f"{study.user_attrs['task']['second_objective']}_per_image"]
            for name, value in zip(names, trial.values):
                client.log_metric(run_id, name, float(value))
        for step, value in sorted(trial.intermediate_values.items()):
            client.log_metric(run_id, "validation_accuracy_partial", float(value), step=int(step))
        status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(trial.state, "FAILED")
        client.set_terminated(run_id, status=status, end_time=int(end.timestamp() * 1000) if end else None)


def prepare_study(task: ConversionTask, options: StudyOptions, base: list[dict], storage=None):
    """Create or reopen the study; a new study's first trial is the calibrated setting ``base``
    (one dict of neuron parameters per hidden layer), which the study stores."""
    task.check()
    options.check()
    study = load_study(options, task, create=True, storage=storage)
    if "base_layers" not in study.user_attrs:
        study.set_user_attr("base_layers", base)
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(task.space.untuned_params(base, task.neuron), user_attrs={"untuned": True},
                            skip_if_exists=True)
    return study
