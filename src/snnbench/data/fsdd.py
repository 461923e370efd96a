"""Free Spoken Digit Dataset: 3,000 8 kHz recordings, official split, STFT spectrogram features.

Recording index 0-4 of each (digit, speaker) is the test set (300), 5-49 the training set (2,700).
The content is checked against a manifest digest: SHA-256 over the sorted file names and each
file's SHA-256, so any missing, extra or altered recording is caught.
"""

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.io import wavfile

from snnbench.data.download import data_root, download, missing_file_error
from snnbench.errors import ConfigError, DataError

COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
ARCHIVE_URLS = (
    f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{COMMIT}.zip",
    f"https://codeload.github.com/Jakobovski/free-spoken-digit-dataset/zip/{COMMIT}",
)
MANIFEST_SHA256 = "99aa5e3a7c822ab55b2a3b47e0b05aeb9f011c54837a12e3831ad24108330829"
N_RECORDINGS = 3000
SAMPLE_RATE = 8000
TEST_INDICES = range(0, 5)
NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class SpectrogramConfig:
    """Fixed-length waveform -> log-magnitude STFT, scaled to [0, 1] per recording."""

    n_samples: int = 8000  # 1 s; longer recordings (under 1%) are cut, shorter ones zero-padded
    nperseg: int = 256
    noverlap: int = 128

    @property
    def shape(self) -> tuple[int, int]:
        frames = 1 + (self.n_samples - self.nperseg) // (self.nperseg - self.noverlap)
        return self.nperseg // 2 + 1, frames


@dataclass(frozen=True)
class AudioSet:
    features: np.ndarray  # float32, (N, freq, frames)
    labels: np.ndarray  # int64
    speakers: tuple
    files: tuple
    checksum: str


def manifest_digest(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        file_hash = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        digest.update(name.encode() + b"\0" + file_hash.encode() + b"\n")
    return digest.hexdigest()


def _extract_archive(archive: Path, folder: Path):
    """Unpack the upstream archive's recordings/ into ``folder`` (all or nothing)."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".recordings."))
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if "/recordings/" in member and member.endswith(".wav"):
                (tmp / Path(member).name).write_bytes(zf.read(member))
    names = os.listdir(tmp)
    if manifest_digest(tmp, names) != MANIFEST_SHA256:
        raise DataError(f"downloaded FSDD archive {archive} does not match the expected recordings; "
                        "delete it and try again")
    os.replace(tmp, folder)


def recordings_folder() -> Path:
    root, may_download = data_root()
    folder = root / "fsdd" / "recordings"
    if not folder.is_dir():
        if not may_download:
            raise missing_file_error(folder, "FSDD recordings folder")
        archive = download(list(ARCHIVE_URLS), root / "fsdd" / f"fsdd-{COMMIT}.zip",
                           lambda path: None if zipfile.is_zipfile(path) else "not a zip archive")
        _extract_archive(archive, folder)
    return folder


@lru_cache(maxsize=1)
def _verified_recordings(folder: Path) -> tuple[str, ...]:
    names = sorted(n for n in os.listdir(folder) if n.endswith(".wav"))
    if len(names) != N_RECORDINGS:
        raise DataError(f"FSDD folder {folder} holds {len(names)} wav files, expected {N_RECORDINGS}; "
                        "restore the missing recordings or point SNNBENCH_DATA at a complete copy")
    if manifest_digest(folder, names) != MANIFEST_SHA256:
        raise DataError(f"FSDD recordings in {folder} differ from the canonical ones (commit {COMMIT[:8]}); "
                        "replace the folder with a fresh copy")
    return tuple(names)


def spectrogram(waveform: np.ndarray, config: SpectrogramConfig) -> np.ndarray:
    clip = waveform[: config.n_samples].astype(np.float32)
    wave = np.pad(clip, (0, config.n_samples - clip.size))
    _, _, stft = signal.stft(wave, fs=SAMPLE_RATE, nperseg=config.nperseg, noverlap=config.noverlap,
                             boundary=None, padded=False)
    logmag = np.log1p(np.abs(stft))
    span = logmag.max() - logmag.min()
    return ((logmag - logmag.min()) / span if span > 0 else logmag * 0).astype(np.float32)


def _read_wav(path: Path) -> np.ndarray:
    try:
        rate, data = wavfile.read(path)
    except ValueError as exc:
        raise DataError(f"FSDD recording {path} is unreadable ({exc}); replace it") from None
    if rate != SAMPLE_RATE or data.ndim != 1:
        raise DataError(f"FSDD recording {path} is not mono {SAMPLE_RATE} Hz; replace it")
    return data


@lru_cache(maxsize=4)
def load_fsdd(split: str, config: SpectrogramConfig = SpectrogramConfig()) -> AudioSet:
    """The official ``train`` (2,700) or ``test`` (300) split as spectrograms."""
    if split not in ("train", "test"):
        raise ConfigError(f"unknown FSDD split {split!r}; use 'train' or 'test'")
    folder = recordings_folder()
    test = split == "test"
    names = tuple(n for n in _verified_recordings(folder) if (int(NAME.match(n)[3]) in TEST_INDICES) == test)
    digits, speakers = zip(*(NAME.match(n).groups()[:2] for n in names))
    features = np.stack([spectrogram(_read_wav(folder / name), config) for name in names])
    return AudioSet(features, np.array([int(d) for d in digits], dtype=np.int64), speakers, names, MANIFEST_SHA256)
