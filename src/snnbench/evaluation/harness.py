"""One evaluation harness: every engine (:mod:`snnbench.engines`) is a :class:`Model`, every metric
is computed once.

``predict(x, noise, start)`` takes flat float32 inputs ``(n, features)``; ``start``, the global index
of ``x[0]`` in the evaluation set, keys the noise draws (:class:`snnbench.noise.NoiseSpec`), so a
sample gets the same noise in any batch layout and engine. :func:`evaluate` gives one row of the
fixed schema (:data:`RESULT_COLUMNS`); :func:`log_result_table` logs a benchmark's rows.
"""

from dataclasses import dataclass

import numpy as np

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
    benchmark: str
    engine: str
    model: str
    modality: str
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


class Model:
    """The protocol every engine implements (``with model:`` closes what it holds). After each
    prediction ``last_activity`` holds that call's :class:`~snnbench.evaluation.metrics.Activity`."""
    engine = ""
    steps = 1
    last_activity: M.Activity | None = None

    def predict(self, x: np.ndarray, noise: NoiseSpec = CLEAN, start: int = 0) -> np.ndarray:
        raise NotImplementedError

    def weights(self) -> list[np.ndarray]:
        """The connection matrices and biases; by default those of the converted network it runs."""
        return self.converted.weights()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, noise: NoiseSpec = CLEAN, start: int = 0,
             measures=M.ALL, **keys) -> dict:
    """One result row: ``keys`` (benchmark, model, modality, ...) plus every metric in ``measures``."""
    logits = model.predict(np.asarray(x, np.float32), noise, start)
    return score(model, logits, y, model.last_activity, noise, measures, **keys)


def score(model: Model, logits: np.ndarray, y: np.ndarray, activity: M.Activity | None, noise: NoiseSpec = CLEAN,
          measures=M.ALL, /, **keys) -> dict:
    """The result row of ``model``'s predictions ``logits``; activity metrics are NaN without ``activity``."""
    row = {"engine": model.engine, "steps": model.steps, "noise_position": noise.position,
           "noise_std": noise.std, "noise_mode": noise.mode, "noise_seed": noise.seed, **keys}
    for metric in measures:
        if activity is None and metric.needs_activity:
            row.update({c: float("nan") for c in metric.columns})
        else:
            row.update(metric(model, logits, y, activity))
    return row


def result_table(rows: list[dict]):
    """The rows as a DataFrame with the fixed columns first (missing ones empty), extras after."""
    import pandas as pd

    table = pd.DataFrame(rows)
    for column in RESULT_COLUMNS:
        if column not in table:
            table[column] = None
    extra = [c for c in table.columns if c not in RESULT_COLUMNS]
    return table[list(RESULT_COLUMNS) + extra]


def log_result_table(rows: list[dict]):
    """Log the rows on the active run as ``results.json``."""
    import mlflow

    mlflow.log_table(result_table(rows), RESULT_TABLE)
