"""Datasets: canonical MNIST and FSDD, features, pairing, splits, and clear errors on bad files."""

import gzip
import hashlib
import shutil
import zipfile

import numpy as np
import pytest

from conftest import require_data
from snnbench.data import (SpectrogramConfig, feature_size, load_features, load_fsdd, load_mnist,
                           pair_by_label, validation_split)
from snnbench.data import fsdd, mnist
from snnbench.data.download import download
from snnbench.errors import SnnbenchError


@pytest.fixture(scope="module")
def data_dir():
    require_data()
    import os
    from pathlib import Path
    return Path(os.environ["SNNBENCH_DATA"])


def test_mnist_sizes_and_checksums(data_dir):
    train, test = load_mnist("train"), load_mnist("test")
    assert train.images.shape == (60000, 28, 28) and train.labels.shape == (60000,)
    assert test.images.shape == (10000, 28, 28) and test.labels.shape == (10000,)
    assert train.images.dtype == np.uint8 and set(np.unique(test.labels)) == set(range(10))
    for name, expected in mnist.FILES.items():
        with gzip.open(data_dir / "mnist" / name, "rb") as handle:
            assert hashlib.md5(handle.read()).hexdigest() == expected
    # the canonical first training labels
    assert train.labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_fsdd_official_split(data_dir):
    train, test = load_fsdd("train"), load_fsdd("test")
    assert len(train.labels) == 2700 and len(test.labels) == 300
    assert all(int(f.split("_")[2][:-4]) < 5 for f in test.files)
    assert all(int(f.split("_")[2][:-4]) >= 5 for f in train.files)
    assert np.bincount(test.labels).tolist() == [30] * 10
    assert train.features.shape == (2700, *SpectrogramConfig().shape)


@pytest.mark.parametrize("length", [100, 4000, 8000, 18262])
def test_spectrogram_shape_is_fixed(length):
    config = SpectrogramConfig()
    wave = np.random.default_rng(0).integers(-2000, 2000, length).astype(np.int16)
    spec = fsdd.spectrogram(wave, config)
    assert spec.shape == config.shape == (129, 61)
    assert spec.min() >= 0 and spec.max() <= 1 and spec.dtype == np.float32


def test_multimodal_pairs_share_label(data_dir):
    images, audio = load_mnist("test"), load_fsdd("test")
    pairs = pair_by_label(images.labels, audio.labels, seed=3)
    assert np.array_equal(audio.labels[pairs], images.labels)
    # within each digit, every recording is used and repeated evenly (counts differ by <= 1)
    counts = np.bincount(pairs, minlength=300)
    for digit in range(10):
        per_recording = counts[audio.labels == digit]
        assert per_recording.min() >= 1 and per_recording.max() - per_recording.min() <= 1
    assert not np.array_equal(pairs, pair_by_label(images.labels, audio.labels, seed=4))
    fused = load_features("multimodal", "test", pair_seed=3)
    assert fused.x.shape == (10000, feature_size("multimodal"))
    assert np.array_equal(fused.x[:, 784:], audio.features.reshape(300, -1)[pairs])
    assert np.array_equal(fused.y, images.labels)


def test_validation_split_is_deterministic_and_disjoint():
    train, val = validation_split(60000, 0.2, seed=1)
    assert len(val) == 12000 and len(train) == 48000
    assert not set(train) & set(val)
    again = validation_split(60000, 0.2, seed=1)
    assert np.array_equal(val, again[1])
    assert not np.array_equal(val, validation_split(60000, 0.2, seed=2)[1])
    with pytest.raises(SnnbenchError, match="validation fraction"):
        validation_split(10, 1.5)


def _one_line(exc: SnnbenchError) -> str:
    message = str(exc)
    assert "\n" not in message
    return message


def test_corrupt_mnist_file_is_named(data_dir, tmp_path, monkeypatch):
    shutil.copytree(data_dir / "mnist", tmp_path / "mnist")
    target = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    target.write_bytes(gzip.compress(b"\x00" * 100))
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path))
    with pytest.raises(SnnbenchError) as err:
        load_mnist("test")
    message = _one_line(err.value)
    assert str(target) in message and "corrupt" in message and "delete it" in message


def test_missing_data_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path))
    with pytest.raises(SnnbenchError) as err:
        load_mnist("train")
    assert "SNNBENCH_DATA" in _one_line(err.value) and "train-images" in str(err.value)
    load_fsdd.cache_clear()
    with pytest.raises(SnnbenchError) as err:
        load_fsdd("test")
    assert "FSDD recordings folder not found" in _one_line(err.value)


def test_altered_fsdd_recording_is_caught(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "fsdd" / "recordings"
    shutil.copytree(data_dir / "fsdd" / "recordings", folder)
    victim = folder / "3_theo_7.wav"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-10])
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path))
    load_fsdd.cache_clear()
    with pytest.raises(SnnbenchError, match="differ from the canonical"):
        load_fsdd("test")
    victim.unlink()
    fsdd._verified_recordings.cache_clear()
    with pytest.raises(SnnbenchError, match="holds 2999 wav files"):
        load_fsdd("test")
    load_fsdd.cache_clear()
    fsdd._verified_recordings.cache_clear()


def test_download_is_atomic_and_checked(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(SnnbenchError, match="could not download file.bin"):
        download([source.as_uri()], dest, lambda p: "bad checksum")
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    bad_url = (tmp_path / "nowhere").as_uri()
    assert download([bad_url, source.as_uri()], dest, lambda p: None) == dest
    assert dest.read_bytes() == b"payload"


def test_downloads_mnist_and_fsdd_into_cache(data_dir, tmp_path, monkeypatch):
    """With no local copy, files come from the mirrors (here: file:// URLs) and are verified."""
    monkeypatch.delenv("SNNBENCH_DATA")
    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "MIRRORS", ((tmp_path / "dead").as_uri() + "/", (data_dir / "mnist").as_uri() + "/"))
    assert load_mnist("test").images.shape == (10000, 28, 28)
    assert (tmp_path / "cache" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()

    archive = tmp_path / "upstream.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for wav in sorted((data_dir / "fsdd" / "recordings").iterdir()):
            zf.write(wav, f"free-spoken-digit-dataset-{fsdd.COMMIT}/recordings/{wav.name}")
    monkeypatch.setattr(fsdd, "ARCHIVE_URLS", (archive.as_uri(),))
    load_fsdd.cache_clear()
    fsdd._verified_recordings.cache_clear()
    assert len(load_fsdd("test").labels) == 300
    assert len(list((tmp_path / "cache" / "data" / "fsdd" / "recordings").iterdir())) == 3000
    load_fsdd.cache_clear()
    fsdd._verified_recordings.cache_clear()
