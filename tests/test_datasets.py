"""Every data set as one type: the built-in ones split exactly as before, a user's .npz file, SNN
Toolbox folder and image folder read alike (an RGB 32x32 case on generated data), bad data stopped
in one line with nothing written, the fit with a model checked, the MLflow dataset logged, the
digits example end to end, and ``tune --dataset``."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import built_once
from snnbench import tuning
from snnbench.data import UNLABELLED, check_fits, load_dataset
from snnbench.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def rgb(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """n generated RGB images (N, H, W, 3) uint8, labels 0..3."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 4


def listing(folder: Path) -> list:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def one_line(error, folder: Path | None = None, before: list | None = None) -> str:
    message = str(error.value)
    assert "\n" not in message
    if folder is not None:
        assert listing(folder) == before  # nothing written
    return message


# ----------------------------------------------------------------------------- built-in data sets
def test_mnist_and_fsdd_keep_their_splits(monkeypatch):
    """The same samples as the code read before the data-set type: MNIST's calibration and tuning
    hold-out, FSDD's suite split, the official test splits; MNIST's test files stay unread until used."""
    from conftest import refuse_test_split, require_data
    from snnbench.conversion.calibration import _mnist_train_split
    from snnbench.data import load_features
    from snnbench.training.suite import TrainSettings, test_data, training_data
    require_data()

    fsdd = load_dataset("fsdd", seed=3)
    train, validation = training_data("audio", TrainSettings(seed=3))
    assert np.array_equal(fsdd.train.x, train.x) and np.array_equal(fsdd.validation.y, validation.y)
    assert np.array_equal(fsdd.test.x, test_data("audio").x) and (len(fsdd.train), len(fsdd.validation)) == (2200, 500)
    assert fsdd.sample_shape == (1, 129, 61) and fsdd.train.x.shape[1] == 129 * 61 and fsdd.modality == "audio"

    images, train_rows, validation_rows = _mnist_train_split(3)
    refuse_test_split(monkeypatch)
    mnist = load_dataset("mnist", seed=3)
    assert np.array_equal(mnist.train.x, images.x[train_rows]) and np.array_equal(mnist.train.y, images.y[train_rows])
    assert np.array_equal(mnist.validation.x, images.x[validation_rows])
    assert mnist.train.checksums == images.checksums and mnist.train.x.dtype == np.float32
    assert (mnist.sample_shape, mnist.classes, mnist.modality) == ((1, 28, 28), 10, "image")
    with pytest.raises(AssertionError, match="test set was read"):
        mnist.test
    monkeypatch.undo()
    assert np.array_equal(mnist.test.y, load_features("image", "test").y)
    assert load_dataset("mnist", seed=4).digest == mnist.digest != fsdd.digest  # the content, whatever the seed
    assert load_dataset("multimodal").sample_shape == (784 + 129 * 61,)


# ----------------------------------------------------------------------------- a user's data
def test_npz_rgb_channels_last_and_first_read_alike(tmp_path):
    x_train, y_train = rgb(40, 0)
    x_test, y_test = rgb(10, 1)
    np.savez(tmp_path / "hwc.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    chw = {k: v.transpose(0, 3, 1, 2) / np.float32(255) for k, v in (("x_train", x_train), ("x_test", x_test))}
    np.savez(tmp_path / "chw.npz", y_train=y_train, y_test=y_test, **chw)
    hwc, first = load_dataset(str(tmp_path / "hwc.npz")), load_dataset(str(tmp_path / "chw.npz"))
    assert hwc.sample_shape == first.sample_shape == (3, 32, 32) and hwc.classes == 4 and hwc.name == "hwc"
    expected = x_test.transpose(0, 3, 1, 2).reshape(10, -1).astype(np.float32) / 255  # channel-major, 0..1
    assert np.array_equal(hwc.test.x, expected) and np.array_equal(first.test.x, expected)
    assert hwc.test.y.dtype == np.int64 and hwc.test.x.dtype == np.float32
    # a seeded 10% of train held out: 4 of 40, the same for a seed, another for another seed
    assert (len(hwc.train), len(hwc.validation)) == (36, 4)
    again, other = load_dataset(str(tmp_path / "hwc.npz")), load_dataset(str(tmp_path / "hwc.npz"), seed=1)
    assert np.array_equal(again.validation.x, hwc.validation.x) and not np.array_equal(other.validation.y,
                                                                                        hwc.validation.y)
    rows = {r.tobytes() for r in np.concatenate([hwc.train.x, hwc.validation.x])}
    assert rows == {r.tobytes() for r in x_train.transpose(0, 3, 1, 2).reshape(40, -1).astype(np.float32) / 255}
    assert other.digest == hwc.digest and other.validation.digest != hwc.validation.digest
    assert len(load_dataset(str(tmp_path / "hwc.npz"), validation=0.25).validation) == 10


def test_npz_shapes_labels_and_given_validation(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "a.npz"

    def save(**arrays):
        np.savez(path, **arrays)
        return load_dataset(str(path))

    features = save(x_train=rng.normal(size=(20, 5)), y_train=np.arange(20) % 3, x_test=rng.normal(size=(6, 5)),
                    y_test=np.eye(3)[np.arange(6) % 3])  # one-hot test labels
    assert features.sample_shape == (5,) and features.modality == "features"
    assert features.test.y.tolist() == [0, 1, 2, 0, 1, 2] and features.classes == 3
    grey = save(x_train=np.zeros((8, 6, 7), np.uint8), y_train=np.ones(8), x_test=np.zeros((2, 6, 7), np.uint8),
                y_test=np.array([[0], [4]]), x_val=np.full((3, 6, 7), 255, np.uint8), y_val=np.zeros(3))
    assert grey.sample_shape == (1, 6, 7) and grey.classes == 5 and len(grey.train) == 8
    assert grey.validation.x.max() == 1.0 and grey.validation.y.dtype == np.int64
    ambiguous = np.zeros((4, 4, 4, 3), np.float32)  # 4 could be channels too: channels-first unless told
    assert save(x_train=ambiguous, y_train=np.zeros(4), x_test=ambiguous, y_test=np.zeros(4)).sample_shape == (4, 4, 3)
    assert save(x_train=ambiguous, y_train=np.zeros(4), x_test=ambiguous, y_test=np.zeros(4),
                layout="NHWC").sample_shape == (3, 4, 4)


def write_images(folder: Path, images: np.ndarray, labels: np.ndarray, names=("cat", "dog", "eel", "fox")):
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / names[label] / f"{i:03d}.png")


def test_image_folders_rgb_and_grey(tmp_path):
    x_train, y_train = rgb(24, 0)
    x_test, y_test = rgb(8, 1)
    write_images(tmp_path / "split" / "train", x_train, y_train)
    write_images(tmp_path / "split" / "test", x_test, y_test)
    folder = load_dataset(str(tmp_path / "split"))
    assert folder.sample_shape == (3, 32, 32) and folder.class_names == ("cat", "dog", "eel", "fox")
    assert (len(folder.train) + len(folder.validation), len(folder.test)) == (24, 8)
    order = np.argsort([f"{['cat', 'dog', 'eel', 'fox'][y]}/{i:03d}" for i, y in enumerate(y_test)])  # file order
    np.savez(tmp_path / "same.npz", x_train=x_train, y_train=y_train, x_test=x_test[order], y_test=y_test[order])
    assert np.array_equal(folder.test.x, load_dataset(str(tmp_path / "same.npz")).test.x)  # as the npz reads them

    flat = tmp_path / "flat"
    write_images(flat, *rgb(30, 2))
    Image.fromarray(rgb(1, 3, size=16)[0][0]).save(flat / "cat" / "small.png")  # resized to the common 32x32
    one, two = load_dataset(str(flat)), load_dataset(str(flat), seed=1)
    assert one.sample_shape == (3, 32, 32) and len(one.test) == 6 and len(one.train) + len(one.validation) == 25
    assert np.array_equal(one.test.x, two.test.x) and not np.array_equal(one.validation.x, two.validation.x)
    assert load_dataset(str(flat), image_size=(8, 12)).sample_shape == (3, 8, 12)

    grey = tmp_path / "grey"
    write_images(grey, rgb(10, 4)[0][..., 0], np.arange(10) % 2)
    assert load_dataset(str(grey)).sample_shape == (1, 32, 32)
    Image.fromarray(rgb(1, 5)[0][0]).save(grey / "cat" / "colour.png")  # one colour image: all read as RGB
    assert load_dataset(str(grey)).sample_shape == (3, 32, 32)


def test_snn_toolbox_folder(tmp_path):
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "x_norm.npz", rng.random((20, 8, 8, 1), dtype=np.float32))
    np.savez_compressed(tmp_path / "x_test.npz", rng.random((9, 8, 8, 1), dtype=np.float32))
    np.savez_compressed(tmp_path / "y_test.npz", np.eye(3)[np.arange(9) % 3])
    toolbox = load_dataset(str(tmp_path))
    assert toolbox.sample_shape == (1, 8, 8) and toolbox.classes == 3 and toolbox.test.y.tolist() == [0, 1, 2] * 3
    assert len(toolbox.train) == 20 and (toolbox.train.y == UNLABELLED).all() and len(toolbox.validation) == 0
    check_fits(toolbox, 64, 3, 20)  # calibration needs no labels
    task = tuning.ConversionTask(dataset=str(tmp_path), onnx_model="model.onnx", val_samples=4, val_steps=2)
    with pytest.raises(DataError) as error:
        tuning.validation_set(task)
    assert one_line(error).endswith(f"more than the 0 samples of data set {tmp_path.name}'s validation split; give "
                                    "a data set with labelled training samples or a validation split")


def _npz(**changes):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((10, 4, 4), dtype=np.float32), "y_train": np.arange(10) % 2,
              "x_test": rng.random((5, 4, 4), dtype=np.float32), "y_test": np.arange(5) % 2}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def _nan_train():
    x = np.random.default_rng(0).random((10, 4, 4), dtype=np.float32)
    x[3, 1, 1] = np.nan
    return x


BAD_NPZ = {
    "NaN": (_npz(x_train=_nan_train()), "x_train has 1 samples with NaN or infinite values (the first: sample 3)"),
    "infinite": (_npz(x_test=np.full((5, 4, 4), np.inf)), "x_test has 5 samples with NaN"),
    "empty split": (_npz(x_test=np.zeros((0, 4, 4)), y_test=np.zeros(0)), "x_test is an empty split"),
    "fractional labels": (_npz(y_train=np.full(10, 0.5)), "labels are not all integers"),
    "negative labels": (_npz(y_test=np.array([0, 1, -2, 0, 1])), "negative labels (the first: -2)"),
    "lengths": (_npz(y_train=np.zeros(9)), "x_train: 10 samples but 9 labels"),
    "missing keys": (_npz(y_test=None, x_train=None), "missing x_train, y_test"),
    "half a validation split": (_npz(x_val=np.zeros((2, 4, 4))), "missing y_val"),
    "unknown key": (_npz(x_valid=np.zeros((2, 4, 4))), "unknown x_valid"),
    "5-D": (_npz(x_test=np.zeros((5, 1, 2, 2, 2))), "has shape (5, 1, 2, 2, 2)"),
    "text": (_npz(x_train=np.array(["a"] * 10)), "holds <U1 values"),
    "shapes differ": (_npz(x_test=np.zeros((5, 4, 5))), "x_train (1, 4, 4), x_test (1, 4, 5)"),
    "pixels and floats": (_npz(x_train=np.zeros((10, 4, 4), np.uint8)), "x_train hold uint8 pixels but x_test"),
    "one-hot": (_npz(y_test=np.full((5, 2), 0.5)), "one-hot rows"),
    "layout": (_npz(layout=np.array("HWC")), "layout is 'HWC'"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_bad_npz_stops_in_one_line(tmp_path, case):
    arrays, expected = BAD_NPZ[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    before = listing(tmp_path)
    with pytest.raises(DataError) as error:
        load_dataset(str(tmp_path / "bad.npz"))
    message = one_line(error, tmp_path, before)
    assert expected in message and str(tmp_path / "bad.npz") in message


def test_paths_of_no_layout_stop_in_one_line(tmp_path):
    accepted = "a .npz file (x_train, y_train, x_test, y_test; optionally x_val, y_val), SNN Toolbox's folder"
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "pickled.npz", x_train=np.array([{}], dtype=object))
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    toolbox = tmp_path / "toolbox"
    toolbox.mkdir()
    np.savez(toolbox / "x_test.npz", np.zeros((2, 3)))
    (tmp_path / "broken" / "cat").mkdir(parents=True)
    Image.fromarray(rgb(1, 0)[0][0]).save(tmp_path / "broken" / "cat" / "a.png")
    (tmp_path / "broken" / "cat" / "b.png").write_bytes(b"not a png")
    (tmp_path / "hollow" / "cat").mkdir(parents=True)
    (tmp_path / "hollow" / "dog").mkdir(parents=True)
    Image.fromarray(rgb(1, 0)[0][0]).save(tmp_path / "hollow" / "cat" / "a.png")
    write_images(tmp_path / "extra" / "train", *rgb(4, 0))
    write_images(tmp_path / "extra" / "test", *rgb(2, 1), names=("cat", "gnu"))
    cases = {"nowhere": f"is neither built in (mnist, fsdd, multimodal) nor an existing path; give {accepted}",
             "notes.txt": f"is neither of the layouts read: {accepted}",
             "empty": "is neither of the layouts read",
             "pickled.npz": "is not a readable .npz file of numeric arrays",
             "one.npz": "holds one array (.npy), not named arrays",
             "toolbox": "is an SNN Toolbox folder without y_test.npz, x_norm.npz",
             "broken": "broken/cat/b.png cannot be read",
             "hollow": "hollow/dog holds no images",
             "extra": "has classes gnu that the training split lacks"}
    before = listing(tmp_path)
    for name, expected in cases.items():
        with pytest.raises(DataError) as error:
            load_dataset(str(tmp_path / name))
        assert expected in one_line(error, tmp_path, before), name
    with pytest.raises(ConfigError, match="an image size is for an image folder"):
        load_dataset(str(tmp_path / "one.npz").replace("one", "pickled"), image_size=(8, 8))
    with pytest.raises(ConfigError, match="validation fraction"):
        load_dataset("mnist", validation=1.0)


def test_check_fits_names_what_does_not_fit(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz(y_test=np.array([0, 1, 0, 1, 7])))
    data = load_dataset(str(tmp_path / "d.npz"))
    check_fits(data, (1, 4, 4), 8, 9)
    check_fits(data, 16, 2, 9, splits=("train", "validation"))  # the test split's label 7 not checked
    problems = {((1, 28, 28), 8, 9): "the model takes inputs of shape (1, 28, 28) (784 values per sample), but data "
                                     "set d's samples have shape (1, 4, 4) (16 values)",
                (16, 2, 9): "data set d's test split has label 7, but the model has 2 outputs (labels 0-1)",
                (16, 8, 10): "10 calibration samples asked for, but data set d's training split has 9"}
    for (shape, classes, samples), expected in problems.items():
        with pytest.raises(DataError) as error:
            check_fits(data, shape, classes, samples)
        assert expected in one_line(error)


def test_user_splits_log_as_mlflow_datasets(tmp_path, tracking_store):
    import mlflow

    from snnbench.tracking.runs import _digest, log_dataset
    x, y = rgb(12, 0)
    np.savez(tmp_path / "pets.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    data = load_dataset(str(tmp_path / "pets.npz"))
    mlflow.set_experiment("pets")  # this test's store (an earlier test's active experiment is not in it)
    with mlflow.start_run() as run:
        mlflow.set_tags(data.tags)
        logged = log_dataset(data.test, "test")
    assert (logged.name, logged.digest) == ("pets", data.test.digest) == ("pets", _digest(data.test))
    stored = mlflow.get_run(run.info.run_id)
    (entry,) = stored.inputs.dataset_inputs
    assert (entry.dataset.name, entry.dataset.digest) == ("pets", data.test.digest)
    assert str(tmp_path / "pets.npz") in entry.dataset.source
    assert json.loads(entry.dataset.profile)["features_shape"] == [4, 3 * 32 * 32]
    assert stored.data.tags["dataset.sample_shape"] == "3x32x32" and stored.data.tags["dataset"] == "pets"
    assert stored.data.tags["dataset.digest"] == data.digest


# ----------------------------------------------------------------------------- the digits example
def _run_digits_example(folder: Path):
    import torch
    spec = importlib.util.spec_from_file_location("digits_example", ROOT / "examples" / "digits.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        made = example.main(["--out", str(folder), "--epochs", "15"])
    finally:
        torch.set_num_threads(threads)
    (folder / "made.json").write_text(json.dumps(made, default=str))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """examples/digits.py run briefly (once per test run): its data set and ONNX model."""
    made = json.loads((built_once(tmp_path_factory, "digits", _run_digits_example) / "made.json").read_text())
    return {"data": Path(made["data"]), "model": Path(made["model"]), "test_accuracy": made["test_accuracy"]}


def test_digits_example_exports_a_data_set_and_a_model_that_fit(digits):
    from snnbench import engines
    from snnbench.conversion import onnx_ops
    from snnbench.evaluation.metrics import correct

    data = load_dataset(str(digits["data"]))
    assert (data.name, data.sample_shape, data.classes, data.modality) == ("digits", (1, 8, 8), 10, "image")
    assert (len(data.train), len(data.validation), len(data.test)) == (1293, 144, 360)
    assert 0.0 == data.train.x.min() and data.train.x.max() == 1.0 and np.bincount(data.test.y).min() >= 35
    model = onnx_ops.extract(digits["model"])
    check_fits(data, model.input_shape, model.n_outputs, 1000)
    logits = engines.build("ort-dnn", digits["model"]).predict(data.test.x[:100])  # any batch size
    assert correct(logits, data.test.y[:100]).mean() > 0.9 and digits["test_accuracy"] > 0.9


# ----------------------------------------------------------------------------- tune --dataset
def tune(argv: list[str]) -> str | None:
    """``snnbench tune ARGV`` past the command line's preflight (which knows only built-in data
    sets): None when it runs, else its one-line error."""
    from snnbench.benchmarks import tune_conversion
    from snnbench.cli.main import build_parser
    from snnbench.errors import SnnbenchError
    try:
        parser = build_parser("tune")
        tune_conversion.run(parser.settings(parser.parse_args(argv)))
    except SnnbenchError as exc:
        assert "\n" not in str(exc)
        return str(exc)
    return None


def test_tune_dataset_options_are_checked_first(digits, tmp_path, tracking_store, monkeypatch):
    chosen = []
    monkeypatch.setattr(tuning, "run_benchmark", lambda task, options, **kw: chosen.append(task))
    storage = ["--storage", f"journal:{tmp_path / 'study.journal'}", "--n-trials", "1"]
    assert "needs --onnx-model" in tune(["--dataset", str(digits["data"]), *storage])
    assert "--val-samples 500 is more than the 144 samples of data set digits's validation split" in \
        tune(["--dataset", str(digits["data"]), "--onnx-model", str(digits["model"]), "--val-samples", "500", *storage])
    assert not (tmp_path / "study.journal").exists() and not chosen
    assert tune(["--dataset", str(digits["data"]), "--onnx-model", str(digits["model"]), *storage]) is None
    assert chosen[0].val_samples == 144 and chosen[0].dataset == str(digits["data"])  # auto: the whole split


def test_a_study_stored_before_the_dataset_option_resumes(tmp_path):
    task = tuning.ConversionTask(val_samples=8, val_steps=2)
    options = tuning.StudyOptions("older", storage=f"sqlite:///{tmp_path / 'o.db'}")
    study = tuning.load_study(options, task, create=True)
    study.set_user_attr("task", {k: v for k, v in task.to_dict().items() if k not in ("dataset", "onnx_model")})
    tuning.load_study(options, task)
    with pytest.raises(Exception, match="dataset differ"):
        tuning.load_study(options, tuning.ConversionTask(val_samples=8, val_steps=2, dataset="fsdd"))


@pytest.mark.slow
def test_tune_on_the_digits(digits, tmp_path, tracking_store):
    """A short study of the digits CNN: calibrated and validated on the digits' own splits, scored
    on their test split after the choice, logged with the data set's name."""
    import mlflow

    out = tmp_path / "best.json"
    argv = ["--dataset", str(digits["data"]), "--onnx-model", str(digits["model"]), "--study-name", "digits",
            "--storage", f"journal:{tmp_path / 'digits.journal'}", "--n-trials", "3", "--val-samples", "60",
            "--val-steps", "2", "--steps", "8", "--calibration-samples", "300", "--best-params-out", str(out)]
    assert tune(argv) is None
    document = json.loads(out.read_text())
    assert document["source"]["model"] == {"onnx_model": str(digits["model"])}
    assert document["source"]["dataset"] == str(digits["data"])
    (run,) = mlflow.search_runs(filter_string="tags.`dataset` = 'digits'", output_format="list")
    assert run.data.params["test_images"] == "360" and run.data.metrics["dnn_test_accuracy"] > 0.9
    assert run.data.metrics["snn_test_accuracy_calibrated"] > 0.85
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["digits"]


def test_digits_convert_and_noise_sweep_end_to_end(digits, tracking_store):
    """The README's digits commands: a data set that is not MNIST, through convert and the main job."""
    import mlflow

    from snnbench.cli.main import main

    model, data = str(digits["model"]), str(digits["data"])
    assert main(["convert", "--onnx-model", model, "--dataset", data, "--test-limit", "0", "--steps-list", "8,32",
                 "--steps", "32"]) in (0, None)
    run = mlflow.search_runs(experiment_names=["convert"], output_format="list")[0]
    metrics = run.data.metrics
    assert metrics["prepared_class_agreement"] == 1.0 and metrics["rate_equivalence_max_abs_err"] <= 1e-4
    assert metrics["conversion_loss_pp_ci_high"] <= 3.0  # the SNN within a few points of the DNN, same images
    assert run.data.tags["dataset"] == "digits"
    assert main(["noise_sweep", "--onnx-model", model, "--dataset", data, "--stds", "0,0.5", "--positions",
                 "input", "--test-limit", "100"]) in (0, None)
    children = mlflow.search_runs(experiment_names=["noise_sweep"], filter_string="tags.engine = 'nengo-snn'",
                                  output_format="list")
    assert len(children) == 3 and all(c.data.metrics["n"] == 100 for c in children)
