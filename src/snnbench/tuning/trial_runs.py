"""MLflow: each finished trial becomes a nested run under the study's parent run."""

from optuna.trial import TrialState


class TrialRunLogger:
    """Optuna callback: each finished trial becomes a nested MLflow run under the study's run."""

    def __init__(self, parent_run_id: str, worker: int = 0):
        self.parent_run_id = parent_run_id
        self.worker = worker

    def __call__(self, study, trial):
        if trial.user_attrs.get("surplus"):
            return  # never evaluated: not a trial of the study's total
        from mlflow.tracking import MlflowClient

        from snnbench.tracking.runs import tracking_uri
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
