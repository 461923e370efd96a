"""snnbench.tuning: storages, the search space around the calibrated setting, resuming, exact totals
with several workers (SQLite, journal, PostgreSQL), MLflow nesting, the labelled test scores, and
the real conversion objective (validation split only)."""

import json
import math
import time
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from postgres import postgres_url  # noqa: F401  (module-scoped fixture)
from snnbench import tuning
from snnbench.errors import ConfigError, SnnbenchError, StorageError

BASE = [{"neuron": "if", "gain": 1.0, "bias_scale": 1.0, "bias_offset": 0.0, "rate_scale": 100.0,
         "synapse": None, "tau_rc": 0.02, "tau_ref": 0.002, "initial_voltage": "half"}]


class Bowl:
    """A cheap stand-in objective over the real search space: best at gain factor 1.5, offset 0.1."""

    def __init__(self, task, pause: float = 0.0):
        self.task, self.pause = task, pause
        self.base = [dict(layer) for layer in BASE]

    def __call__(self, trial):
        params = self.task.space.suggest(trial, len(self.base), self.task.neuron)
        time.sleep(self.pause)  # lets concurrent workers overlap
        score = 1.0 - math.log(params["layer0.gain_factor"] / 1.5) ** 2 - (params["layer0.bias_offset"] - 0.1) ** 2
        if self.task.multi_objective:
            return score, params["layer0.rate_scale_factor"]  # "activity" grows with the rate scale
        trial.report(score, 1)
        return score


def bowl(task):
    return Bowl(task)


def slow_bowl(task):
    return Bowl(task, pause=0.05)


def small_task(**kw):
    return tuning.ConversionTask(val_samples=8, val_steps=2, **kw)


def finished(study):
    return study.get_trials(deepcopy=False, states=tuning.FINISHED)


# ----------------------------------------------------------------------------- pure pieces
def test_storage_specs(tmp_path):
    assert isinstance(tuning.open_storage(f"sqlite:///{tmp_path / 'a.db'}"), optuna.storages.RDBStorage)
    for spec in (f"journal:{tmp_path / 'b.log'}", str(tmp_path / "c.journal")):
        assert isinstance(tuning.open_storage(spec), optuna.storages.JournalStorage)
    with pytest.raises(ConfigError, match="neither a database URL"):
        tuning.open_storage("optuna.db")
    with pytest.raises(StorageError, match="cannot open Optuna storage"):
        tuning.open_storage("nosuchdialect://x/y")
    label = tuning.storage_label("postgresql+psycopg2://me:secret@db.example/optuna")
    assert "secret" not in label and "db.example/optuna" in label


def test_untuned_params_reproduce_the_calibrated_layers():
    space = tuning.SearchSpace(synapse=(1e-4, 1e-2), tau_rc=(0.005, 0.05), tau_ref=(0.0005, 0.005))
    lif = [{**BASE[0], "neuron": "lif", "gain": 0.02, "bias_offset": 0.004}]
    params = space.untuned_params(lif, "lif")
    assert params["layer0.filtered"] is False and "layer0.synapse" not in params
    assert params["layer0.gain_factor"] == params["layer0.rate_scale_factor"] == 1.0 and params["layer0.bias_offset"] == 0
    assert tuning.layers_from_params(params, lif) == lif
    tuned = tuning.layers_from_params({**params, "layer0.filtered": True, "layer0.synapse": 0.003,
                                       "layer0.gain_factor": 2.5, "layer0.rate_scale_factor": 0.5,
                                       "layer0.bias_offset": 0.1}, lif)
    assert tuned[0]["synapse"] == 0.003 and tuned[0]["gain"] == pytest.approx(0.05) and lif[0]["gain"] == 0.02
    assert tuned[0]["rate_scale"] == 50.0 and tuned[0]["bias_offset"] == pytest.approx(0.104)
    assert "tau_rc" not in space.tuned("if") and "synapse" not in tuning.SearchSpace().tuned("if")


@pytest.mark.parametrize("space, message", [(tuning.SearchSpace(gain=(0.0, 2.0)), "log-scale"),
                                             (tuning.SearchSpace(bias_offset=(1.0, -1.0)), "LOW < HIGH")])
def test_bad_bounds_are_one_line_errors(space, message):
    with pytest.raises(SnnbenchError, match=message):
        space.check()


# ----------------------------------------------------------------------------- studies
def run_study(task, storage, name, n_trials, factory=bowl):
    options = tuning.StudyOptions(name, storage=storage, n_trials=n_trials)
    tuning.prepare_study(task, options, BASE)
    tuning.run_workers(task, options, factory, parent_run_id=None)
    return tuning.load_study(options, task)


def test_resumed_study_keeps_its_trials(tmp_path):
    task, storage = small_task(), f"sqlite:///{tmp_path / 'optuna.db'}"
    study = run_study(task, storage, "resume", 4)
    before = [(t.number, t.params, t.value) for t in finished(study)]
    assert len(before) == 4 and study.trials[0].user_attrs == {"untuned": True}
    assert study.trials[0].params == tuning.SearchSpace().untuned_params(BASE, "if")

    study = run_study(task, storage, "resume", 9)
    after = [(t.number, t.params, t.value) for t in finished(study)]
    assert len(after) == 9 and after[:4] == before
    assert sum(bool(t.user_attrs.get("untuned")) for t in study.trials) == 1
    # The same total again runs nothing more; other fixed settings are refused.
    assert len(run_study(task, storage, "resume", 9).trials) == 9
    with pytest.raises(SnnbenchError, match="steps"):
        run_study(small_task(steps=16), storage, "resume", 10)


def test_best_params_document_and_mlflow_nesting(tmp_path, tracking_store):
    task = small_task()
    storage = f"journal:{tmp_path / 'study.journal'}"
    options = tuning.StudyOptions("doc", storage=storage, n_trials=6)
    out = tmp_path / "best.json"
    document = tuning.run_benchmark(task, options, score_test=False, objective_factory=bowl, best_params_out=out)
    assert json.loads(out.read_text()) == document == tuning.best_params_from_study("doc", storage)
    assert set(document) == {"layers", "sim", "source"} and document["sim"]["steps"] == 8
    assert set(document["layers"][0]) == set(BASE[0])
    with pytest.raises(StorageError, match="no study"):
        tuning.best_params_from_study("missing", storage)

    from mlflow.tracking import MlflowClient  # imported here: worker processes re-import this module
    client = MlflowClient(tracking_store)
    parent = client.search_runs([client.get_experiment_by_name("tune_conversion").experiment_id],
                                "tags.`optuna.study` = 'doc' and tags.`mlflow.parentRunId` IS NULL")[0]
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 6
    assert {c.data.tags["optuna.state"] for c in children} <= {"COMPLETE", "PRUNED"}
    assert all("layer0.gain_factor" in c.data.params for c in children)
    assert parent.data.metrics["trials_complete"] + parent.data.metrics["trials_pruned"] == 6
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "best_params.json" in artifacts and "plots/optimization_history.png" in plots
    assert "plots/param_importances.png" in plots


def check_exact_total(study, n_trials):
    done = finished(study)
    assert len(done) == n_trials and len({t.number for t in done}) == n_trials
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == n_trials  # no trial run twice
    unfinished = [t for t in study.trials if t.state not in tuning.FINISHED]
    assert all(t.user_attrs.get("surplus") for t in unfinished)  # none running, none failed for real


def run_two_workers(storage: str, name: str, n_trials: int = 12):
    task = small_task()
    options = tuning.StudyOptions(name, storage=storage, n_trials=n_trials, workers=2)
    tuning.prepare_study(task, options, BASE)
    tuning.run_workers(task, options, slow_bowl, parent_run_id=None)
    study = tuning.load_study(options, task)
    check_exact_total(study, n_trials)
    return study


def test_two_workers_finish_exactly_the_requested_trials_sqlite(tmp_path):
    run_two_workers(f"sqlite:///{tmp_path / 'optuna.db'}", "workers-sqlite")


def test_two_workers_on_a_journal_log_their_trials_under_one_parent(tmp_path, tracking_store):
    options = tuning.StudyOptions("workers-journal", storage=f"journal:{tmp_path / 'o.journal'}", n_trials=8,
                                  workers=2)
    tuning.run_benchmark(small_task(), options, score_test=False, objective_factory=slow_bowl)
    check_exact_total(tuning.load_study(options, small_task()), 8)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_store)
    experiment = client.get_experiment_by_name("tune_conversion").experiment_id
    parent = client.search_runs([experiment], "tags.`mlflow.parentRunId` IS NULL")[0]
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == sorted(
        t.number for t in finished(tuning.load_study(options, small_task())))
    assert {c.data.tags["optuna.worker"] for c in children} <= {"0", "1"}


def test_multi_objective_study_keeps_the_most_accurate_pareto_setting(tmp_path):
    task = small_task(second_objective="spikes")
    study = run_study(task, f"sqlite:///{tmp_path / 'o.db'}", "pareto", 8)
    assert len(study.directions) == 2 and isinstance(study.pruner, optuna.pruners.NopPruner)
    document = tuning.best_params_document(study)
    assert document["source"]["validation_accuracy"] == max(t.values[0] for t in finished(study))
    assert document["source"]["trial"] in {t.number for t in study.best_trials}


def test_two_workers_on_postgresql(postgres_url):  # noqa: F811
    study = run_two_workers(postgres_url, "workers-pg")
    assert study.trials[0].user_attrs.get("untuned") and {t.number for t in study.trials} >= set(range(12))


def test_exact_total_turns_away_a_trial_beyond_the_total(tmp_path):
    """A trial started while others already make up the total is failed unevaluated, not counted."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")
    study.ask(), study.ask()  # two trials still running elsewhere: the total of 2 is taken
    calls = []
    gated = tuning.exact_total(lambda trial: calls.append(trial.number) or 1.0, n_trials=2)
    study.optimize(gated, n_trials=3, catch=(tuning.SurplusTrial,))
    last = study.trials[-1]
    assert calls == [] and len(study.trials) == 3
    assert last.state == optuna.trial.TrialState.FAIL and last.user_attrs["surplus"] is True


# ----------------------------------------------------------------------------- the real objective
# ----------------------------------------------------------------------------- test scores
class Labelled:
    """A stand-in objective whose calibrated and tuned settings score differently on the test set."""
    base = [{"setting": "calibrated"}]
    right = {"calibrated": 0.6, "tuned": 0.9}
    task = SimpleNamespace(arch="mlp", seed=0, steps=4)

    def inputs(self, x):
        return x

    def dnn_logits(self, x):
        return np.eye(4)[self.y]

    def snn_logits(self, layers, x):
        share = self.right[layers[0]["setting"]]
        predicted = np.where(np.arange(len(self.y)) < share * len(self.y), self.y, (self.y + 1) % 4)
        return np.eye(4)[predicted]


def test_test_scores_carry_the_right_labels():
    objective = Labelled()
    objective.y = np.arange(100) % 4
    test = SimpleNamespace(x=np.zeros((100, 3)), y=objective.y)
    scores = tuning.score_on_test_set(objective, {"layers": [{"setting": "tuned"}]}, test)
    assert scores["test_images"] == 100 and scores["dnn_test_accuracy"] == 1.0
    assert scores["snn_test_accuracy_calibrated"] == 0.6 and scores["snn_test_accuracy_tuned"] == 0.9
    assert scores["conversion_loss_calibrated_points"] == pytest.approx(40.0)
    assert scores["conversion_loss_tuned_points"] == pytest.approx(10.0)
    assert scores["snn_test_accuracy_tuned_ci_low"] < 0.9 < scores["snn_test_accuracy_tuned_ci_high"]
    rows = {(r["engine"], r["method"]): r["accuracy"] for r in scores["rows"]}  # the same in the result table
    assert rows == {("ort-dnn", ""): 1.0, ("nengo-snn", "calibrated"): 0.6, ("nengo-snn", "tuned"): 0.9}


# ----------------------------------------------------------------------------- the real objective
@pytest.mark.slow
def test_real_study_starts_calibrated_and_never_reads_the_test_set(tmp_path, tracking_store, monkeypatch):
    from conftest import refuse_test_split, require_data
    from snnbench.cli.main import main
    require_data()
    options = dict(epochs=1, train_limit=3000, val_samples=300, val_steps=3, steps=4)
    task = tuning.ConversionTask(**options)
    tuning.trained_model_folder(task)  # trained (and scored) before the study

    refuse_test_split(monkeypatch)

    out = tmp_path / "best.json"
    argv = ["tune", "--study-name", "real", "--storage", f"journal:{tmp_path / 'real.journal'}",
            "--n-trials", "6", "--epochs", "1", "--train-limit", "3000", "--val-samples", "300",
            "--val-steps", "3", "--steps", "4", "--skip-test", "--best-params-out", str(out)]
    assert main(argv) == 0
    study = optuna.load_study(study_name="real", storage=tuning.open_storage(f"journal:{tmp_path / 'real.journal'}"))
    calibrated = study.trials[0]
    assert calibrated.user_attrs["untuned"] and calibrated.state == optuna.trial.TrialState.COMPLETE
    assert sorted(calibrated.intermediate_values) == [100, 200, 300]
    objective = tuning.ConversionObjective(task)
    assert study.user_attrs["base_layers"] == tuning.calibrated_layers(task, objective.converted)
    dnn = (objective.dnn_logits(objective.x).argmax(axis=1) == objective.y).mean()
    assert study.best_value >= calibrated.value >= dnn - 0.03  # the calibrated start is already close to the DNN
    document = json.loads(out.read_text())
    assert document["source"]["validation_accuracy"] == study.best_value
    assert document["layers"][0]["neuron"] == "if" and document["sim"]["steps"] == 4

    from snnbench.conversion.nengo_net import load_params
    layers, sim = load_params(out)  # convert's --params-json reader accepts the file
    assert layers[0].gain == document["layers"][0]["gain"] and sim["steps"] == 4


def test_cli_rejects_bad_input_in_one_line(tmp_path, tracking_store, capsys):
    from snnbench.cli.main import main
    assert main(["tune", "--storage", "optuna.db", "--n-trials", "1", "--skip-test"]) == 2
    assert main(["tune", "--best-params-out", str(tmp_path / "no" / "best.json")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "neither a database URL" in errors[0] and "does not exist" in errors[1]
    assert not (tmp_path / "optuna.db").exists()
