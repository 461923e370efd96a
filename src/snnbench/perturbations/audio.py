"""Audio corruptions of the suite's FSDD samples (audio, and the audio part of multimodal samples).

The samples are spectrograms (:mod:`snnbench.data.fsdd`: 1 s of 8 kHz audio, log-magnitude STFT of
129 frequency bins x 61 frames, scaled to [0, 1] per recording). Where a corruption is defined on the
signal it acts on the waveform: the sample's recording is read again, corrupted, and turned into its
spectrogram the way the data set makes it (the same per-recording scaling); where it is defined on the
spectrogram it acts there. Either way every engine gets the same corrupted sample (keyed by its index).

* ``snr_noise`` (waveform): white Gaussian noise at a signal-to-noise ratio in dB, the signal's power being
  the recording's mean square; Aurora-2's levels (Hirsch & Pearce, 2000: 20 dB down to -5 dB).
* ``time_shift`` (waveform): the recording moved by a fraction of its 1 s window, earlier or later (drawn),
  the gap filled with silence.
* ``time_mask``, ``freq_mask`` (spectrogram): SpecAugment's masks (Park et al., Interspeech 2019): ``t``
  consecutive frames (``f`` bins) set to the recording's quietest value (0 after the scaling), ``t`` drawn
  uniformly from 0 to ``level`` x the frames (bins), the first one uniformly where the mask fits.

These few lines of numpy are written here rather than taken from audiomentations: its 0.43 release needs
numpy 2 (through librosa and numba), which the suite's pins (TensorFlow 2.15, nengo-dl: numpy 1.26) do not
allow. A sample whose spectrogram is no FSDD recording's (a data set of your own) has no waveform, so the
waveform families refuse it in one line; image corruptions refuse audio, and these refuse images.
"""

from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np

from snnbench.data import feature_size
from snnbench.errors import DataError
from snnbench.perturbations import Perturbation, Target, keyed_rng, register

SNRS = (20, 15, 10, 5, 0, -5)
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)


def audio_columns(sample_shape: tuple) -> slice | None:
    """The columns of a flat sample of ``sample_shape`` that hold an FSDD spectrogram, or None."""
    size = int(np.prod(sample_shape))
    if size == feature_size("audio"):
        return slice(0, size)
    if size == feature_size("multimodal"):
        return slice(feature_size("image"), size)
    return None


@cache
def _recordings(split: str) -> dict:
    """A spectrogram's bytes -> its file name, for every FSDD recording of ``split``."""
    from snnbench.data.fsdd import load_fsdd

    recordings = load_fsdd(split)
    return {row.tobytes(): name for row, name in zip(recordings.features, recordings.files)}


def waveform(spectrogram: np.ndarray) -> np.ndarray:
    """The FSDD recording whose spectrogram is ``spectrogram`` (float32, flat or 2-D), as float samples."""
    from scipy.io import wavfile

    from snnbench.data.fsdd import recordings_folder

    key = np.ascontiguousarray(spectrogram, np.float32).tobytes()
    name = _recordings("test").get(key) or _recordings("train").get(key)
    if name is None:
        raise DataError("this audio corruption acts on the waveform, and the sample's spectrogram is no FSDD "
                        "recording's; use time_mask or freq_mask, which act on the spectrogram")
    return wavfile.read(recordings_folder() / name)[1].astype(np.float64)


@dataclass(frozen=True)
class AudioCorruption(Perturbation):
    """A corruption of one FSDD spectrogram (``corrupt``: the (bins, frames) array, ``rng`` its keyed draw)."""
    kind = "input"
    level_help: ClassVar[str] = "fractions from 0 to 1"

    def valid_level(self, level: float) -> bool:
        return 0 <= level <= 1

    def check(self, target: Target) -> None:
        super().check(target)
        if audio_columns(target.sample_shape) is None:
            raise DataError(f"perturbation {self.name} corrupts FSDD spectrograms (audio, or the audio of "
                            f"multimodal samples); the {target.modality or 'data set'}'s samples have shape "
                            f"{tuple(target.sample_shape)}")

    def corrupt(self, spectrogram: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def apply(self, x: np.ndarray, sample_shape: tuple, level: float, seed: int, start: int = 0) -> np.ndarray:
        """Samples ``x`` (n, *sample_shape) with their spectrograms corrupted at ``level``: sample ``i`` with
        the draw keyed by (seed, family, level, ``start + i``) (float32, x's shape)."""
        from snnbench.data.fsdd import SpectrogramConfig

        self.check(Target("", sample_shape))
        columns, shape = audio_columns(sample_shape), SpectrogramConfig().shape
        out = np.array(x, np.float32).reshape(len(x), -1)
        for i, row in enumerate(out):
            spectrogram = row[columns].reshape(shape)
            row[columns] = self.corrupt(spectrogram, level, keyed_rng(seed, self.name, level, start + i)).reshape(-1)
        return out.reshape(np.shape(x))


@dataclass(frozen=True)
class WaveformCorruption(AudioCorruption):
    """A corruption of the recording itself (``distort``), its spectrogram made again."""

    def distort(self, wave: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def corrupt(self, spectrogram, level, rng):
        from snnbench.data.fsdd import SpectrogramConfig
        from snnbench.data.fsdd import spectrogram as to_spectrogram

        config = SpectrogramConfig()
        wave = waveform(spectrogram)[: config.n_samples]
        return to_spectrogram(self.distort(wave, level, rng), config)


@register("snr_noise")
@dataclass(frozen=True)
class SnrNoise(WaveformCorruption):
    """White Gaussian noise at ``level`` dB signal-to-noise ratio."""
    level_name = "snr_db"
    level_help = "signal-to-noise ratios in dB (finite)"
    levels: tuple = SNRS
    quick: tuple = (5,)

    def valid_level(self, level: float) -> bool:
        return True

    def distort(self, wave, level, rng):
        power = np.mean(wave ** 2)
        return wave + np.sqrt(power / 10 ** (level / 10)) * rng.standard_normal(wave.shape)


@register("time_shift")
@dataclass(frozen=True)
class TimeShift(WaveformCorruption):
    """The recording moved by ``level`` of the 1 s window, earlier or later, silence filling the gap."""
    level_name = "fraction"
    levels: tuple = FRACTIONS
    quick: tuple = (0.2,)

    def distort(self, wave, level, rng):
        from snnbench.data.fsdd import SpectrogramConfig

        window = np.pad(wave, (0, max(0, SpectrogramConfig().n_samples - len(wave))))
        shift = int(round(level * len(window))) * (1 if rng.random() < 0.5 else -1)
        out = np.zeros_like(window)
        if shift >= 0:
            out[shift:] = window[: len(window) - shift]
        else:
            out[:shift] = window[-shift:]
        return out


@dataclass(frozen=True)
class SpecAugmentMask(AudioCorruption):
    """SpecAugment's mask along ``axis`` (0: frequency bins, 1: frames), of width up to ``level`` x its size."""
    level_name = "fraction"
    axis: ClassVar[int] = 0
    levels: tuple = FRACTIONS
    quick: tuple = (0.2,)

    def corrupt(self, spectrogram, level, rng):
        size = spectrogram.shape[self.axis]
        width = int(rng.integers(0, int(round(level * size)) + 1))
        first = int(rng.integers(0, size - width + 1))
        out = spectrogram.copy()
        index = [slice(None), slice(None)]
        index[self.axis] = slice(first, first + width)
        out[tuple(index)] = 0
        return out


@register("time_mask")
@dataclass(frozen=True)
class TimeMask(SpecAugmentMask):
    """Consecutive frames masked (SpecAugment's time mask)."""
    axis = 1


@register("freq_mask")
@dataclass(frozen=True)
class FreqMask(SpecAugmentMask):
    """Consecutive frequency bins masked (SpecAugment's frequency mask)."""
    axis = 0
