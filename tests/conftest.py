"""Test set-up: data from SNNBENCH_DATA (default ../shared/data beside the checkout), a temporary
MLflow store per test and a model cache per test run, so tests never touch the user's; folders
built once per run and shared by the pytest-xdist workers."""

import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # set before numpy, torch or TensorFlow start their thread pools
    # the cores shared out between the workers: threads beyond them spin waiting on each other
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                  "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_name, _threads)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if not os.environ.get("SNNBENCH_DATA") and SHARED_DATA.is_dir():
    os.environ["SNNBENCH_DATA"] = str(SHARED_DATA)


def run_folder(tmp_path_factory, name: str) -> Path:
    """``name`` in this test run's temporary root, which every pytest-xdist worker of the run shares
    (``make test`` runs the tests in several worker processes)."""
    root = tmp_path_factory.getbasetemp()
    return (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / name


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The run folder ``name``, filled by ``build(folder)`` once per test run: the first worker to
    ask builds it while the others wait for it."""
    from filelock import FileLock

    folder = run_folder(tmp_path_factory, name)
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """One model cache for the test run (its builds are atomic, so workers share it safely)."""
    cache = run_folder(tmp_path_factory, "snnbench-cache")
    cache.mkdir(exist_ok=True)
    os.environ["SNNBENCH_CACHE"] = str(cache)
    yield


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables made, once a session (making them runs every schema
    migration: over a second per store)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_store(tmp_path, monkeypatch, _empty_store):
    """A fresh sqlite MLflow store for one test (a copy of the empty one, its default experiment's
    artifacts in the test's folder, as a store made there puts them); returns its URI."""
    import mlflow

    db = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_store, db)
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                           (str(tmp_path / "mlruns" / "0"),))
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


def require_data():
    """Skip (with the reason) when no dataset copy is reachable and downloads are impossible."""
    if not os.environ.get("SNNBENCH_DATA"):
        pytest.skip("set SNNBENCH_DATA to a folder holding mnist/ and fsdd/ (see README 'Data')")


def refuse_test_split(monkeypatch):
    """From here on, reading the MNIST test files fails the test (checked at once)."""
    from snnbench.data import load_mnist, mnist

    real_file = mnist.mnist_file

    def train_only(name):
        assert not name.startswith("t10k"), f"the MNIST test set was read ({name})"
        return real_file(name)
    monkeypatch.setattr(mnist, "mnist_file", train_only)
    with pytest.raises(AssertionError, match="test set"):
        load_mnist("test")


def calibrated_reference_mlp(train_limit: int, epochs: int = 1):
    """The conversion study's MLP trained briefly (cached), read out of ONNX and calibrated on
    500 training images: (converted model, layer settings)."""
    require_data()
    from snnbench.conversion.calibration import Calibration, calibrate, mnist_training_images
    from snnbench.conversion.onnx_ops import extract
    from snnbench.training.conversion import trained_conversion_model
    from snnbench.training.recipes import Recipe

    model = extract(trained_conversion_model("mlp", Recipe(epochs=epochs, train_limit=train_limit)) / "model.onnx")
    layers, _ = calibrate(model, mnist_training_images(0), Calibration(samples=500))
    return model, layers


def suite_logits(model, x, noise=None, batch_size: int = 1000):
    """Logits of a member of the multimodal family as the benchmarks get them: from its engine
    (snntorch-snn or torch-dnn; rate-encoded input spikes from seed 0)."""
    from snnbench import engines
    from snnbench.engines.pytorch import suite_engine
    from snnbench.noise import NoiseSpec

    engine = engines.build(suite_engine(model), model, {"batch_size": batch_size})
    return engine.predict(np.asarray(x, np.float32), noise or NoiseSpec())
