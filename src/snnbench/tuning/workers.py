"""Workers: processes that run trials of one study on a shared storage and stop together at
exactly the study's total of finished trials."""

import multiprocessing
from dataclasses import replace
from typing import Callable

import optuna
from optuna.trial import TrialState

from snnbench.errors import SnnbenchError
from snnbench.tuning.storage import FINISHED, StudyOptions, finished_count, load_study
from snnbench.tuning.task import ConversionTask
from snnbench.tuning.trial_runs import TrialRunLogger

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
    # A new study's first trial is the enqueued calibrated setting: run it here, before the workers
    # start, so that no two workers pop it at once (SQLite cannot lock the row they both read).
    first = replace(options, n_trials=min(options.n_trials, 1))
    work(task, first, objective_factory, parent_run_id, objective=objective)
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
    """Create or reopen the study; a new study's first trial is the calibrated setting ``base``
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
