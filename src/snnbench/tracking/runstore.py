"""Finished runs read back from one or more MLflow tracking stores (for the report).

A :class:`RunStore` looks across several stores (e.g. the CPU store and a GPU store) and returns
:class:`FoundRun` objects that remember which store they came from, so their artifacts can be read.
"""

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from snnbench.errors import StorageError

PARENT_TAG = "mlflow.parentRunId"
BENCHMARK_TAG = "snnbench.benchmark"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass
class FoundRun:
    run: object  # mlflow.entities.Run
    client: MlflowClient
    uri: str

    @property
    def id(self) -> str:
        return self.run.info.run_id

    @property
    def params(self) -> dict:
        return self.run.data.params

    @property
    def metrics(self) -> dict:
        return self.run.data.metrics

    @property
    def tags(self) -> dict:
        return self.run.data.tags

    @property
    def name(self) -> str:
        return self.run.info.run_name or self.id

    def param(self, name: str, default=None):
        """A param decoded from its logged text (JSON where it parses, else the text)."""
        text = self.params.get(name)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _moved_artifacts(self) -> Path | None:
        """The run's artifact folder in a store copied from another machine: its ``mlruns``
        beside the sqlite file, laid out as MLflow wrote it there (``<experiment>/<run>/artifacts``)."""
        if not self.uri.startswith("sqlite:///"):
            return None
        folder = Path(self.uri[len("sqlite:///"):]).parent / "mlruns" / self.run.info.experiment_id / self.id / "artifacts"
        return folder if folder.is_dir() else None

    def artifact_text(self, artifact: str) -> str | None:
        """The text of one logged artifact file, or None if it cannot be read."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return Path(self.client.download_artifacts(self.id, artifact, tmp)).read_text()
            except (MlflowException, OSError):
                moved = self._moved_artifacts()
                return (moved / artifact).read_text() if moved and (moved / artifact).is_file() else None

    def table(self, artifact: str) -> pd.DataFrame | None:
        """A table logged with ``mlflow.log_table`` (JSON) or as CSV, or None if absent."""
        text = self.artifact_text(artifact)
        if text is None:
            return None
        if artifact.endswith(".csv"):
            return pd.read_csv(io.StringIO(text))
        data = json.loads(text)
        return pd.DataFrame(data["data"], columns=data["columns"])

    def history(self, metric: str) -> list:
        """(step, value) pairs of a metric logged at several steps."""
        return sorted((m.step, m.value) for m in self.client.get_metric_history(self.id, metric))


def _check_exists(uri: str):
    """Refuse a sqlite or file store that does not exist (MLflow would create an empty one)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
    elif uri.startswith("file://"):
        path = Path(uri[len("file://"):])
    elif "://" not in uri:
        path = Path(uri)
    else:
        return
    if not path.exists():
        raise StorageError(f"no tracking store at {uri} ({path} does not exist); run a benchmark first "
                            "or pass the store with --tracking-uri")


class RunStore:
    def __init__(self, uris: list[str], prefer_full: bool = True):
        if not uris:
            raise StorageError("no tracking store given; pass --tracking-uri URI (e.g. sqlite:///mlflow.db)")
        self.uris = list(dict.fromkeys(uris))
        for uri in self.uris:
            _check_exists(uri)
        self.clients = {uri: MlflowClient(tracking_uri=uri) for uri in self.uris}
        self.prefer_full = prefer_full

    def _search(self, benchmark: str, filter_string: str) -> list[FoundRun]:
        """Runs of a benchmark in any experiment (``mlflow run`` puts them in the one it is given),
        found by the benchmark tag every snnbench run carries."""
        found = []
        for uri, client in self.clients.items():
            try:
                ids = [e.experiment_id for e in client.search_experiments()]
            except MlflowException as exc:
                raise StorageError(f"cannot read tracking store {uri}: {exc}; check --tracking-uri") from None
            if not ids:
                continue
            runs = client.search_runs(ids, filter_string=f"tags.`{BENCHMARK_TAG}` = '{benchmark}' and {filter_string}",
                                      max_results=50000, order_by=["attributes.start_time DESC"])
            found += [FoundRun(r, client, uri) for r in runs]
        return sorted(found, key=lambda f: f.run.info.start_time or 0, reverse=True)

    def finished(self, benchmark: str) -> list[FoundRun]:
        """Finished top-level runs of a benchmark, newest first, across all stores."""
        return self._search(benchmark, f"attributes.status = 'FINISHED' and tags.`{PARENT_TAG}` IS NULL")

    def latest(self, benchmark: str, where=None) -> FoundRun | None:
        """The newest finished top-level run (optionally one for which ``where(run)`` holds);
        with ``prefer_full``, the newest full-profile run if there is one."""
        runs = [r for r in self.finished(benchmark) if where is None or where(r)]
        full = [r for r in runs if r.params.get("profile") == "full"] if self.prefer_full else []
        return (full or runs or [None])[0]

    def children(self, parent: FoundRun) -> list[FoundRun]:
        """Finished child runs of a parent, oldest first."""
        runs = parent.client.search_runs(
            [parent.run.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent.id}' and attributes.status = 'FINISHED'",
            max_results=50000, order_by=["attributes.start_time ASC"])
        return [FoundRun(r, parent.client, parent.uri) for r in runs]
