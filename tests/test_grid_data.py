"""Validation that does not leak: held-out recordings (or speakers) never occur in training; the
study's protocol, which repeats them, stays available and unchanged."""

import numpy as np
import pytest

from conftest import require_data
from snnbench.data import load_tables, validation_rows, validation_split
from snnbench.errors import SnnbenchError
from snnbench.training.suite import AUDIO_VALIDATION, VALIDATION, TrainSettings, training_data


@pytest.fixture(scope="module")
def fused():
    require_data()
    return load_tables("multimodal", "train")


def split(tables, validation, seed=0, train_limit=0):
    return validation_rows(tables, validation, seed, 0, train_limit, VALIDATION, AUDIO_VALIDATION)


def test_recordings_protocol_holds_out_recordings_the_training_part_never_hears(fused):
    train, val = split(fused, "recordings")
    assert not set(train.recording) & set(val.recording)
    assert not set(train.image) & set(val.image)
    assert len(set(val.recording)) == 500 and len(set(train.recording)) == 2200  # the study's 500 of 2,700
    assert len(val) == 12000 and len(train) == 48000  # 20% of the images
    for rows in (train, val):  # every pair is one digit, spoken and written
        assert np.array_equal(fused.image_labels[rows.image], rows.y)
        assert np.array_equal(fused.recording_labels[rows.recording], rows.y)


def test_speakers_protocol_holds_out_whole_speakers(fused):
    train, val = split(fused, "speakers", seed=3)
    speakers = np.asarray(fused.speakers)
    held = set(speakers[val.recording])
    assert len(held) == 1 and not held & set(speakers[train.recording])
    assert set(np.unique(val.y)) == set(range(10))


def test_study_protocol_is_the_reference_split_and_repeats_its_recordings(fused):
    train, val = split(fused, "study", seed=1)
    pool = fused.all_rows(0)
    expected_train, expected_val = validation_split(len(pool), VALIDATION, 1)
    assert np.array_equal(train.image, pool.image[expected_train])
    assert np.array_equal(val.recording, pool.recording[expected_val])
    assert len(set(val.recording) & set(train.recording)) > 2000  # what the other protocols avoid


def test_protocols_differ_only_where_they_should(fused):
    image_tables = load_tables("image", "train")
    a, b = split(image_tables, "recordings", seed=2, train_limit=500), split(image_tables, "study", seed=2, train_limit=500)
    assert np.array_equal(a[0].image, b[0].image) and np.array_equal(a[1].image, b[1].image)  # images: one split
    audio = load_tables("audio", "train")
    for rows_a, rows_b in zip(split(audio, "recordings", seed=2), split(audio, "study", seed=2)):
        assert np.array_equal(rows_a.recording, rows_b.recording)  # audio samples are recordings already
    train, val = split(fused, "recordings", seed=2, train_limit=2000)
    assert len(train) + len(val) == 2000 and not set(train.recording) & set(val.recording)


def test_training_data_follows_the_settings_protocol():
    require_data()
    settings = TrainSettings(train_limit=300, seed=4)
    train, val = training_data("multimodal", settings)
    assert train.x.shape == (240, 8653) and val.x.shape == (60, 8653)
    audio_train = {row.tobytes() for row in train.x[:, 784:]}
    assert not any(row.tobytes() in audio_train for row in val.x[:, 784:])
    with pytest.raises(SnnbenchError, match="validation protocol"):
        TrainSettings(validation="none")
