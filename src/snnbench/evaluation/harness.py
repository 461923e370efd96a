"""One evaluation harness: every engine (:mod:`snnbench.engines`) is a :class:`Model`, every metric
is computed once, and every result row is a :class:`ResultRow` made here.

``predict(x, noise, start)`` takes flat float32 inputs ``(n, features)``; ``start``, the global index
of ``x[0]`` in the evaluation set, keys the noise draws (:class:`snnbench.noise.NoiseSpec`), so a
sample gets the same noise in any batch layout and engine. :func:`evaluate` / :func:`score` give one
row of the fixed schema (:data:`RESULT_COLUMNS`), :func:`evaluate_curve` one per step count of one
simulation, :func:`result_row` one of figures measured elsewhere; :func:`log_result_table` logs a
benchmark's rows.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from snnbench.errors import ConfigError
from snnbench.evaluation import metrics as M
from snnbench.noise import NoiseSpec

CLEAN = NoiseSpec()
# What identifies a row, then what was measured (metrics.COLUMNS). Every benchmark's table has these.
KEY_COLUMNS = ("benchmark", "engine", "model", "modality", "method", "steps", "noise_position", "noise_std",
               "noise_mode", "noise_seed", "seed")
RESULT_COLUMNS = KEY_COLUMNS + M.COLUMNS
RESULT_TABLE = "results.json"


@dataclass(frozen=True)
class ResultKey:
    """What identifies a result row (:data:`KEY_COLUMNS`): the one place its columns are assembled."""
    benchmark: str = ""
    engine: str = ""
    model: str = ""
    modality: str = ""
    method: str = ""
    steps: int = 1
    noise: NoiseSpec = NoiseSpec()
    seed: int = 0

    def columns(self) -> dict:
        """The key columns, in :data:`KEY_COLUMNS` order."""
        noise = self.noise
        return {"benchmark": self.benchmark, "engine": self.engine, "model": self.model, "modality": self.modality,
                "method": self.method, "steps": self.steps, "noise_position": noise.position, "noise_std": noise.std,
                "noise_mode": noise.mode, "noise_seed": noise.seed, "seed": self.seed}


@dataclass(frozen=True, eq=False)
class ResultRow(Mapping):
    """One row of a result table: its :class:`ResultKey`, the measured metric columns
    (``figures``, in :data:`metrics.COLUMNS <snnbench.evaluation.metrics.COLUMNS>` order, NaN where
    not measured) and a benchmark's own columns after them (``extras``, (column, value) pairs).
    Reads as a mapping of its columns (``row["accuracy"]``); ``correct``, where known, says which
    samples it got right (for paired differences; not a column). Made by :func:`score` (and
    :func:`evaluate`, :func:`evaluate_curve`) or :func:`result_row`; extended by :meth:`with_extras`."""
    key: ResultKey
    figures: tuple
    extras: tuple = ()
    correct: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if len(self.figures) != len(M.COLUMNS):
            raise ValueError(f"a result row has {len(M.COLUMNS)} metric figures, got {len(self.figures)}")
        taken = [c for c, _ in self.extras if c in RESULT_COLUMNS]
        if taken:
            raise ValueError(f"extra columns {taken} are key or metric columns: set them in the key or the figures")

    @cached_property
    def _columns(self) -> dict:
        return {**self.key.columns(), **dict(zip(M.COLUMNS, self.figures)), **dict(self.extras)}

    def columns(self) -> dict:
        """Every column: :data:`KEY_COLUMNS`, then :data:`metrics.COLUMNS
        <snnbench.evaluation.metrics.COLUMNS>`, then the extras."""
        return dict(self._columns)

    def __getitem__(self, column: str):
        return self._columns[column]

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def with_extras(self, **extras) -> "ResultRow":
        """This row with more extra columns (a column it has already takes the new value, in its place)."""
        return replace(self, extras=tuple({**dict(self.extras), **extras}.items()))


def result_row(key: ResultKey, measured: Mapping, correct: np.ndarray | None = None, **extras) -> ResultRow:
    """The row of figures measured outside :func:`score` (a grid's test counts, timings, a finished
    run's logged metrics): the metric columns read from ``measured`` (NaN where absent; its other
    entries ignored), ``extras`` after them."""
    return ResultRow(key, tuple(measured.get(c, float("nan")) for c in M.COLUMNS), tuple(extras.items()), correct)


class Model:
    """The protocol every engine implements (``with model:`` closes what it holds). After each
    prediction ``last_activity`` holds that call's :class:`~snnbench.evaluation.metrics.Activity`
    (activity over ``steps`` time steps)."""
    engine = ""
    steps = 1
    last_activity: M.Activity | None = None

    def predict(self, x: np.ndarray, noise: NoiseSpec = CLEAN, start: int = 0) -> np.ndarray:
        raise NotImplementedError

    def predict_curve(self, x: np.ndarray, steps_list, noise: NoiseSpec = CLEAN, start: int = 0) -> dict:
        """Logits ``{steps: (n, classes)}`` for several step counts of one run; a model that reads out
        only after its own ``steps`` gives those alone."""
        steps_list = sorted({int(s) for s in steps_list})
        if steps_list != [self.steps]:
            raise ConfigError(f"{self.engine or type(self).__name__} reads out after {self.steps} steps only, "
                              f"not after {steps_list}")
        return {self.steps: self.predict(x, noise, start)}

    def weights(self) -> list[np.ndarray]:
        """The connection matrices and biases; by default those of the converted network it runs."""
        return self.converted.weights()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, /, noise: NoiseSpec = CLEAN, start: int = 0,
             measures=M.ALL, **key) -> ResultRow:
    """One result row of ``model`` on ``x``: ``key`` (benchmark, model, modality, ...) and every metric in ``measures``."""
    logits = model.predict(np.asarray(x, np.float32), noise, start)
    return score(model, logits, y, model.last_activity, noise, measures, **key)


@dataclass(frozen=True)
class Curve:
    """Result rows and logits per step count from one run, and the seconds the run took."""
    rows: dict
    logits: dict
    seconds: float


def evaluate_curve(model: Model, x: np.ndarray, y: np.ndarray, steps_list, /, noise: NoiseSpec = CLEAN,
                   start: int = 0, measures=M.ALL, **key) -> Curve:
    """A result row per step count in ``steps_list``, all read from one run of ``model``
    (:meth:`Model.predict_curve`); the activity, measured over the model's own ``steps``, goes to
    that step count's row (the others' activity metrics are NaN)."""
    started = time.perf_counter()
    logits = model.predict_curve(np.asarray(x, np.float32), steps_list, noise, start)
    seconds = time.perf_counter() - started
    rows = {s: score(model, logits[s], y, model.last_activity if s == model.steps else None, noise, measures,
                     **{**key, "steps": s}) for s in sorted(logits)}
    return Curve(rows, logits, seconds)


def score(model: Model, logits: np.ndarray, y: np.ndarray, activity: M.Activity | None, noise: NoiseSpec = CLEAN,
          measures=M.ALL, /, **key) -> ResultRow:
    """The result row of ``model``'s predictions ``logits``; activity metrics are NaN without ``activity``.
    ``key``: the :class:`ResultKey` fields besides the noise (engine and steps default to the model's)."""
    figures = {}
    for metric in measures:
        if activity is None and metric.needs_activity:
            figures.update({c: float("nan") for c in metric.columns})
        else:
            figures.update(metric(model, logits, y, activity))
    key = ResultKey(**{"engine": model.engine, "steps": model.steps, **key, "noise": noise})
    return result_row(key, figures, M.correct(logits, y))


def result_table(rows: list[ResultRow]):
    """The rows as a DataFrame: :data:`RESULT_COLUMNS`, then the extras in the order they first appear."""
    import pandas as pd

    wrong = {type(r).__name__ for r in rows if not isinstance(r, ResultRow)}
    if wrong:
        raise TypeError(f"result tables take harness.ResultRow rows (made by score or result_row), got {wrong}")
    table = pd.DataFrame([r.columns() for r in rows])
    for column in RESULT_COLUMNS:
        if column not in table:
            table[column] = None
    extra = [c for c in table.columns if c not in RESULT_COLUMNS]
    return table[list(RESULT_COLUMNS) + extra]


def log_result_table(rows: list[ResultRow]):
    """Log the rows on the active run as ``results.json``."""
    import mlflow

    mlflow.log_table(result_table(rows), RESULT_TABLE)
