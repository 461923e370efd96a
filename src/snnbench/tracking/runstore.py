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
from snnbench.tracking.runs import PARENT

BENCHMARK_TAG = "snnbench.benchmark"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass
class FoundRun:
    run: object  # mlflow.entities.Run
    client: MlflowClient
    uri: str

    def __post_init__(self):
        self.id = self.run.info.run_id
        self.params, self.metrics, self.tags = self.run.data.params, self.run.data.metrics, self.run.data.tags

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
        folder = local_store(self.uri)[1].parent / "mlruns" / self.run.info.experiment_id / self.id / "artifacts"
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


def local_store(uri: str) -> tuple[str, Path] | None:
    """(scheme, path) of a store in a local file or folder (``sqlite:///``, ``file://`` or a bare
    path); None for a tracking server."""
    for scheme in ("sqlite:///", "file://", ""):
        if uri.startswith(scheme) and (scheme or "://" not in uri):
            return scheme, Path(uri[len(scheme):])
    return None


class RunStore:
    def __init__(self, uris: list[str], prefer_full: bool = True):
        if not uris:
            raise StorageError("no tracking store given; pass --tracking-uri URI (e.g. sqlite:///mlflow.db)")
        self.uris = list(dict.fromkeys(uris))
        for uri in self.uris:  # MLflow would create an empty store
            local = local_store(uri)
            if local and not local[1].exists():
                raise StorageError(f"no tracking store at {uri} ({local[1]} does not exist); run a benchmark first "
                                   "or pass the store with --tracking-uri")
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
        return self._search(benchmark, f"attributes.status = 'FINISHED' and tags.`{PARENT}` IS NULL")

    def latest(self, benchmark: str, where=None) -> FoundRun | None:
        """The newest finished top-level run (optionally one for which ``where(run)`` holds);
        with ``prefer_full``, the newest full-profile run if there is one."""
        runs = [r for r in self.finished(benchmark) if where is None or where(r)]
        full = [r for r in runs if r.params.get("profile") == "full"] if self.prefer_full else []
        return (full or runs or [None])[0]
