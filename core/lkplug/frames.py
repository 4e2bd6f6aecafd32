"""Frames: numpy arrays with the few facts a media stage needs.

Audio is (samples, channels), interleaved like LiveKit's and soundfile's frames, in one of two sample
formats named as FFmpeg names them: ``s16`` (int16) and ``flt`` (float32, full scale is 1.0).
Every frame knows its media ``kind`` and its start ``time`` in seconds, so a muxer can interleave kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

SAMPLE_FORMATS = {"s16": np.dtype(np.int16), "flt": np.dtype(np.float32)}
DTYPE_TO_FORMAT = {dtype: name for name, dtype in SAMPLE_FORMATS.items()}


class Frame:
    """Base of every frame type. ``kind`` names the media ("audio", "video")."""

    kind: ClassVar[str]
    __slots__ = ()

    @property
    def time(self) -> float:
        """Start time in seconds since the stream started."""
        raise NotImplementedError

    def replace(self, **changes):
        return replace(self, **changes)

    def until(self, end: float):
        """The part of this frame before ``end`` seconds, or None (for ``--duration``)."""
        return self if self.time < end else None


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What an audio stream carries; ``frame_size`` is None when frames vary in length."""

    rate: int
    channels: int
    sample_format: str = "s16"
    frame_size: int | None = None

    def __str__(self) -> str:
        size = f", {self.frame_size / self.rate * 1000:g} ms frames" if self.frame_size else ""
        return f"audio {self.rate} Hz, {self.channels} ch, {self.sample_format}{size}"


@dataclass(frozen=True, slots=True, eq=False)
class AudioFrame(Frame):
    """``data`` has shape (samples, channels), dtype int16 or float32.

    ``timestamp`` counts samples (per channel) since the stream started.
    """

    data: np.ndarray
    sample_rate: int
    timestamp: int = 0
    kind: ClassVar[str] = "audio"

    def __post_init__(self):
        data = self.data
        if data.ndim != 2:
            raise ValueError(f"audio frame data must be (samples, channels), got shape {data.shape}")
        if data.dtype not in DTYPE_TO_FORMAT:
            raise ValueError(f"audio frame dtype must be int16 or float32, got {data.dtype}")

    @property
    def samples(self) -> int:
        return self.data.shape[0]

    @property
    def channels(self) -> int:
        return self.data.shape[1]

    @property
    def sample_format(self) -> str:
        return DTYPE_TO_FORMAT[self.data.dtype]

    @property
    def duration(self) -> float:
        return self.data.shape[0] / self.sample_rate

    @property
    def time(self) -> float:
        return self.timestamp / self.sample_rate

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.data.shape[1], self.sample_format)

    def until(self, end: float):
        keep = round(end * self.sample_rate) - self.timestamp
        if keep <= 0:
            return None
        return self if keep >= len(self.data) else self.replace(data=self.data[:keep])
