"""Test signals and measurements on numpy arrays (generated here, never read from ../shared)."""

from __future__ import annotations

import numpy as np


def sine(freq: float, seconds: float, rate: int, channels: int = 1, dbfs: float = -6.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def to_int16(data: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(data * 32768), -32768, 32767).astype(np.int16)


def rms_db(data: np.ndarray) -> float:
    x = data.astype(np.float64)
    if data.dtype == np.int16:
        x /= 32768
    return 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12)


def dominant_frequency(data: np.ndarray, rate: int) -> float:
    mono = data.astype(np.float64).reshape(len(data), -1).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono))


def write_flac(path, data: np.ndarray, rate: int) -> None:
    """Encode int16 (samples, channels) to FLAC with PyAV (FFmpeg), independent of lkplug."""
    import av

    layout = {1: "mono", 2: "stereo"}[data.shape[1]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data.reshape(1, -1)), format="s16", layout=layout
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
