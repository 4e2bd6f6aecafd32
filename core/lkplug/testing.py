"""Helpers for testing processors: make test signals, run a chain on numpy arrays, measure the result.

    from lkplug.testing import run_chain, sine, level_dbfs

    def test_my_gain_halves_the_level():
        signal = sine(440, seconds=1.0, rate=48000)
        out = run_chain(signal, 48000, "gain:db=-6")
        assert level_dbfs(out) - level_dbfs(signal) == pytest.approx(-6.0, abs=0.01)

Signals are float32 arrays of shape (samples, channels) at full scale 1.0 (``to_s16`` makes int16 of
them). ``run_chain`` runs through the real engine, converters included, in frames of ``frame_ms``, so
a processor that keeps state across frames is tested the way it runs. To test on a live LiveKit track,
use the fixtures of the local server: ``pytest_plugins = ["lkplug_livekit.devserver.pytest_plugin"]``
gives ``livekit_server`` and ``livekit_join`` (see that module).
"""

from __future__ import annotations

import numpy as np

from .api import process
from .convert import S16_SCALE, to_s16

__all__ = [
    "delay",
    "dominant_frequency",
    "impulse",
    "level_dbfs",
    "noise",
    "peak_dbfs",
    "run_chain",
    "sine",
    "to_s16",
]

_SILENCE_DB = -240.0  # what the level of digital silence reads as, instead of -inf


def _amplitude(dbfs: float) -> float:
    return 10 ** (dbfs / 20)


def _channels(mono: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(mono.astype(np.float32)[:, None], channels, axis=1)


def sine(
    freq: float, seconds: float = 1.0, rate: int = 48000, channels: int = 1, dbfs: float = -6.0
) -> np.ndarray:
    """A sine of peak level ``dbfs`` (its RMS level is 3.01 dB lower), the same in every channel."""
    t = np.arange(round(seconds * rate)) / rate
    return _channels(_amplitude(dbfs) * np.sin(2 * np.pi * freq * t), channels)


def noise(
    seconds: float = 1.0, rate: int = 48000, channels: int = 1, dbfs: float = -20.0, seed: int = 0
) -> np.ndarray:
    """White noise of RMS level ``dbfs``, independent in each channel, reproducible by ``seed``."""
    samples = np.random.default_rng(seed).standard_normal((round(seconds * rate), channels))
    return (samples * _amplitude(dbfs)).astype(np.float32)


def impulse(
    seconds: float = 1.0, rate: int = 48000, at: float = 0.0, channels: int = 1, dbfs: float = 0.0
) -> np.ndarray:
    """Silence with one sample of level ``dbfs`` at ``at`` seconds (for delays and impulse responses)."""
    mono = np.zeros(round(seconds * rate))
    mono[round(at * rate)] = _amplitude(dbfs)
    return _channels(mono, channels)


def _as_float(data: np.ndarray) -> np.ndarray:
    x = np.asarray(data, dtype=np.float64)
    return x / S16_SCALE if data.dtype == np.int16 else x


def level_dbfs(data: np.ndarray) -> float:
    """RMS level in dBFS over all samples and channels (a full-scale sine reads -3.01)."""
    rms = np.sqrt(np.mean(_as_float(data) ** 2)) if data.size else 0.0
    return float(20 * np.log10(rms)) if rms > 0 else _SILENCE_DB


def peak_dbfs(data: np.ndarray) -> float:
    """Peak level in dBFS."""
    peak = np.max(np.abs(_as_float(data))) if data.size else 0.0
    return float(20 * np.log10(peak)) if peak > 0 else _SILENCE_DB


def dominant_frequency(data: np.ndarray, rate: int) -> float:
    """The frequency in Hz of the strongest spectral peak of the channels' average."""
    x = _as_float(data)
    mono = x.reshape(len(x), -1).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono))


def delay(reference: np.ndarray, delayed: np.ndarray) -> int:
    """How many samples ``delayed`` lags ``reference`` (negative if it leads), by cross-correlation of
    the channels' averages."""
    a, b = (_as_float(x).reshape(len(x), -1).mean(axis=1) for x in (reference, delayed))
    size = 1 << (len(a) + len(b)).bit_length()  # zero-padded: a linear, not a circular, correlation
    correlation = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(correlation))
    return lag if lag < len(b) else lag - size


def run_chain(
    samples: np.ndarray, rate: int, *specs: str, frame_ms: float | None = 20.0, registry=None
) -> np.ndarray:
    """Run ``samples`` ((n, channels) or (n,), int16 or float32) through the processors ``specs``
    (``"gain:db=-6"``, ``"noisegate:threshold=-40"``) in frames of ``frame_ms`` (None: one frame),
    with the engine's converters, and return the output samples (2-D). The output rate is the input's
    unless the chain resamples; ``lkplug.process`` returns it too."""
    frame_size = None if frame_ms is None else max(1, round(rate * frame_ms / 1000))
    out, _ = process(samples, rate, *specs, registry=registry, frame_size=frame_size)
    return out
