"""The ``tone`` source: a test signal generated frame by frame, phase-continuous."""

from __future__ import annotations

import asyncio

import numpy as np

from lkplug import AudioFormat, AudioFrame, Source
from lkplug.convert import to_s16


class ToneSource(Source):
    def __init__(
        self,
        freq=440.0,
        wave="sine",
        amplitude=-6.0,
        rate=48000,
        channels=1,
        duration=5.0,
        frame_ms=20.0,
        format="s16",
    ):
        self.freq, self.wave, self.rate, self.channels = freq, wave, rate, channels
        self.peak = 10.0 ** (amplitude / 20.0)
        self.total = round(duration * rate) if duration > 0 else None
        self.duration = duration or None
        self.frame_size = max(1, round(rate * frame_ms / 1000))
        self.sample_format = format
        # numpy.random is a module of its own (~10 ms to import): only noise needs it
        self._noise = np.random.default_rng(0) if wave == "noise" else None

    def probe(self) -> dict:
        return {"audio": AudioFormat(self.rate, self.channels, self.sample_format, self.frame_size)}

    def _samples(self, start: int, count: int) -> np.ndarray:
        if self.wave == "sine":
            t = (start + np.arange(count)) / self.rate
            mono = self.peak * np.sin(2 * np.pi * self.freq * t)
        elif self.wave == "noise":
            mono = self._noise.uniform(-self.peak, self.peak, count)
        else:
            mono = np.zeros(count)
        data = np.repeat(mono.astype(np.float32)[:, None], self.channels, axis=1)
        return to_s16(data) if self.sample_format == "s16" else data

    async def frames(self):
        position = 0
        while self.total is None or position < self.total:
            count = self.frame_size if self.total is None else min(self.frame_size, self.total - position)
            yield AudioFrame(self._samples(position, count), self.rate, position)
            position += count
            await asyncio.sleep(0)  # let a stop request in
