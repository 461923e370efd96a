"""Trained models taken by reference from the tracking store.

A reference is a logged model (``models:/<model id>``), a run's artifact (``runs:/<run id>/<path>``)
or a local file or folder. :func:`local_copy` gives a local path to it (downloaded once per
process); :func:`run_models` lists the models of a run's children (a ``multimodal_study`` run logs
one per trained configuration and seed, its id in the child's ``snnbench.model_id`` tag).
"""

from functools import lru_cache
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from snnbench.errors import DataError
from snnbench.tracking.runs import MODEL_ID_TAG, PARENT, tracking_uri

SCHEMES = ("models:/", "runs:/")


@lru_cache(maxsize=64)
def local_copy(reference: str) -> Path:
    """A local path holding ``reference`` (a store reference is downloaded, a local path kept)."""
    if not reference.startswith(SCHEMES):
        path = Path(reference).expanduser()
        if not path.exists():
            raise DataError(f"model {reference!r} not found: give an existing file or folder, "
                            f"models:/<model id> or runs:/<run id>/<path>")
        return path
    mlflow.set_tracking_uri(tracking_uri())
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=reference))
    except (MlflowException, OSError) as exc:
        raise DataError(f"model {reference!r} could not be read from the tracking store {tracking_uri()}: "
                        f"{str(exc).splitlines()[0]} (set MLFLOW_TRACKING_URI to the store that holds it)") from None


def run_models(run_id: str) -> list[dict]:
    """The models of run ``run_id``'s finished children: for each, the child's params (as logged,
    text), its run id and ``model``: the ``models:/`` reference of the model it trained."""
    client = MlflowClient(tracking_uri())
    try:
        parent = client.get_run(run_id)
    except MlflowException:
        raise DataError(f"no run {run_id!r} in the tracking store {tracking_uri()} "
                        "(set MLFLOW_TRACKING_URI to the store of that run)") from None
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{PARENT}` = '{run_id}' and attributes.status = 'FINISHED'",
                                  max_results=50000)
    models = [{**child.data.params, "run_id": child.info.run_id, "model": f"models:/{child.data.tags[MODEL_ID_TAG]}"}
              for child in children if MODEL_ID_TAG in child.data.tags]
    if not models:
        raise DataError(f"run {run_id} has no finished children with a logged model "
                        f"(run multimodal_study, whose children log theirs, and pass its run id)")
    return models
